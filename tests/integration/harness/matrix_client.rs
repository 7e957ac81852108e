//! A minimal Matrix client-server API client for the tests: one logged-in user, plain JSON over
//! HTTP, panicking with the status and body on any error.
//!
//! Events arrive through `/sync` long-polling: [`MatrixClient::next_event`] keeps the sync
//! position and buffers every event it reads but did not want, so a later wait still sees it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::{Method, Url};
use serde_json::{json, Value};

/// The sync filter: room events only, no presence, receipts, typing or account data.
const FILTER: &str = r#"{"presence":{"not_types":["*"]},"account_data":{"not_types":["*"]},"room":{"timeline":{"limit":500},"ephemeral":{"types":["m.typing","m.receipt"]},"account_data":{"not_types":["*"]}}}"#;

/// One Matrix user's session: an access token on a homeserver.
#[derive(Debug)]
pub struct MatrixClient {
    http: reqwest::Client,
    base: Url,
    access_token: String,
    user_id: String,
    /// Where `/sync` stands and what it brought that nobody took yet.
    sync: Mutex<SyncState>,
}

#[derive(Debug, Default)]
struct SyncState {
    /// `None` until the first sync: the first wait starts from the rooms' recent timelines.
    since: Option<String>,
    /// Per room id, events read from `/sync` that no wait took yet, oldest first.
    buffer: HashMap<String, VecDeque<Value>>,
    /// Why the last `/sync` got no answer, if it did not: for the timeout message.
    last_error: Option<String>,
}

impl MatrixClient {
    /// A client for `user_id` on the homeserver at `base_url` (`http://127.0.0.1:PORT`).
    pub fn new(base_url: &str, access_token: &str, user_id: &str) -> MatrixClient {
        MatrixClient {
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            base: Url::parse(base_url).unwrap_or_else(|e| panic!("{base_url}: {e}")),
            access_token: access_token.to_owned(),
            user_id: user_id.to_owned(),
            sync: Mutex::default(),
        }
    }

    /// The full user id, `@localpart:server`.
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// The access token, e.g. for a second client on the same session.
    pub fn access_token(&self) -> &str {
        &self.access_token
    }

    /// `GET /account/whoami`: who the homeserver thinks the token belongs to.
    pub async fn whoami(&self) -> Value {
        self.call(Method::GET, &["account", "whoami"], None).await
    }

    /// Create a room with `options` as the `/createRoom` body (`room_alias_name`, `preset`,
    /// `visibility`, `room_version`, `invite`, `name`, `topic`, …); returns the room id.
    pub async fn create_room(&self, options: Value) -> String {
        let answer = self
            .call(Method::POST, &["createRoom"], Some(options))
            .await;
        string(&answer, "room_id")
    }

    /// Join a room by id or alias; returns the room id.
    pub async fn join(&self, room_id_or_alias: &str) -> String {
        let answer = self
            .call(Method::POST, &["join", room_id_or_alias], Some(json!({})))
            .await;
        string(&answer, "room_id")
    }

    /// Leave a room.
    pub async fn leave(&self, room_id: &str) {
        self.call(Method::POST, &["rooms", room_id, "leave"], Some(json!({})))
            .await;
    }

    /// Invite `user_id` into a room.
    pub async fn invite(&self, room_id: &str, user_id: &str) {
        let body = json!({ "user_id": user_id });
        self.call(Method::POST, &["rooms", room_id, "invite"], Some(body))
            .await;
    }

    /// Kick `user_id` out of a room.
    pub async fn kick(&self, room_id: &str, user_id: &str, reason: &str) {
        let body = json!({ "user_id": user_id, "reason": reason });
        self.call(Method::POST, &["rooms", room_id, "kick"], Some(body))
            .await;
    }

    /// Ban `user_id` from a room.
    pub async fn ban(&self, room_id: &str, user_id: &str, reason: &str) {
        let body = json!({ "user_id": user_id, "reason": reason });
        self.call(Method::POST, &["rooms", room_id, "ban"], Some(body))
            .await;
    }

    /// Send an `m.text` message; returns its event id.
    pub async fn send_text(&self, room_id: &str, body: &str) -> String {
        let content = json!({ "msgtype": "m.text", "body": body });
        self.send(room_id, "m.room.message", content).await
    }

    /// Open a direct chat with `user` (invited, as clients do it) and wait until they have
    /// joined it; its room id.
    pub async fn direct_chat_with(&self, user: &str, timeout: Duration) -> String {
        let options =
            json!({"is_direct": true, "invite": [user], "preset": "trusted_private_chat"});
        let room = self.create_room(options).await;
        self.next_event(
            &room,
            |e| {
                e["type"] == "m.room.member"
                    && e["state_key"] == user
                    && e["content"]["membership"] == "join"
            },
            timeout,
        )
        .await;
        room
    }

    /// Upload a file to the media repository; returns its `mxc://` address.
    pub async fn upload(&self, data: Vec<u8>, content_type: &str) -> String {
        let url = self.base.join("_matrix/media/v3/upload").unwrap();
        let answer = self
            .http
            .post(url)
            .bearer_auth(&self.access_token)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(data)
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success(), "upload: {}", answer.status());
        let answer: Value = answer.json().await.unwrap();
        answer["content_uri"].as_str().unwrap().to_owned()
    }

    /// The content of the file at `mxc` (authenticated media) and its content type.
    pub async fn download(&self, mxc: &str) -> (Vec<u8>, String) {
        let path = mxc.strip_prefix("mxc://").expect("an mxc:// address");
        let url = self
            .base
            .join(&format!("_matrix/client/v1/media/download/{path}"))
            .unwrap();
        let answer = self
            .http
            .get(url)
            .bearer_auth(&self.access_token)
            .send()
            .await
            .unwrap();
        assert!(
            answer.status().is_success(),
            "download: {}",
            answer.status()
        );
        let kind = answer
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .map(|t| t.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (answer.bytes().await.unwrap().to_vec(), kind)
    }

    /// Send a message event of any type; returns its event id.
    pub async fn send(&self, room_id: &str, event_type: &str, content: Value) -> String {
        let txn = txn_id();
        let path = ["rooms", room_id, "send", event_type, &txn];
        let answer = self.call(Method::PUT, &path, Some(content)).await;
        string(&answer, "event_id")
    }

    /// Redact an event; returns the redaction's event id.
    pub async fn redact(&self, room_id: &str, event_id: &str, reason: &str) -> String {
        let txn = txn_id();
        let path = ["rooms", room_id, "redact", event_id, &txn];
        let body = json!({ "reason": reason });
        let answer = self.call(Method::PUT, &path, Some(body)).await;
        string(&answer, "event_id")
    }

    /// Set a state event; returns its event id.
    pub async fn set_state(
        &self,
        room_id: &str,
        event_type: &str,
        state_key: &str,
        content: Value,
    ) -> String {
        let path = ["rooms", room_id, "state", event_type, state_key];
        let answer = self.call(Method::PUT, &path, Some(content)).await;
        string(&answer, "event_id")
    }

    /// Set the room's topic; returns the event id.
    pub async fn set_topic(&self, room_id: &str, topic: &str) -> String {
        self.set_state(room_id, "m.room.topic", "", json!({ "topic": topic }))
            .await
    }

    /// Set this user's global display name.
    pub async fn set_displayname(&self, name: &str) {
        let path = ["profile", self.user_id.as_str(), "displayname"];
        let body = json!({ "displayname": name });
        self.call(Method::PUT, &path, Some(body)).await;
    }

    /// Set the user's avatar (an `mxc://` address; empty: none).
    pub async fn set_avatar(&self, mxc: &str) {
        let path = ["profile", self.user_id.as_str(), "avatar_url"];
        let body = json!({ "avatar_url": mxc });
        self.call(Method::PUT, &path, Some(body)).await;
    }

    /// The content of a state event; panics if there is none.
    pub async fn state(&self, room_id: &str, event_type: &str, state_key: &str) -> Value {
        let path = ["rooms", room_id, "state", event_type, state_key];
        self.call(Method::GET, &path, None).await
    }

    /// The content of a state event, or `None` if the room has none of that type and key.
    pub async fn try_state(
        &self,
        room_id: &str,
        event_type: &str,
        state_key: &str,
    ) -> Option<Value> {
        let path = ["rooms", room_id, "state", event_type, state_key];
        let (status, answer) = self.try_call(Method::GET, &path, None).await;
        (status != reqwest::StatusCode::NOT_FOUND)
            .then(|| self.check(&Method::GET, &path, status, answer))
    }

    /// Every member event of a room as (user id, membership, display name).
    pub async fn members(&self, room_id: &str) -> Vec<(String, String, Option<String>)> {
        let answer = self
            .call(Method::GET, &["rooms", room_id, "members"], None)
            .await;
        answer["chunk"]
            .as_array()
            .expect("chunk in /members")
            .iter()
            .map(|event| {
                (
                    string(event, "state_key"),
                    string(&event["content"], "membership"),
                    event["content"]["displayname"].as_str().map(str::to_owned),
                )
            })
            .collect()
    }

    /// Start (for 30 s) or stop typing in a room.
    pub async fn typing(&self, room_id: &str, typing: bool) {
        let room_id = self.room_id(room_id).await;
        let body = if typing {
            json!({"typing": true, "timeout": 30_000})
        } else {
            json!({"typing": false})
        };
        let user = self.user_id.clone();
        self.call(
            Method::PUT,
            &["rooms", &room_id, "typing", &user],
            Some(body),
        )
        .await;
    }

    /// Mark a room read up to `event_id` (`m.read`).
    pub async fn read_up_to(&self, room_id: &str, event_id: &str) {
        let room_id = self.room_id(room_id).await;
        let path = ["rooms", &room_id, "receipt", "m.read", event_id];
        self.call(Method::POST, &path, Some(json!({}))).await;
    }

    /// One event of a room, by id.
    pub async fn event(&self, room_id: &str, event_id: &str) -> Value {
        self.call(Method::GET, &["rooms", room_id, "event", event_id], None)
            .await
    }

    /// The room id an alias (`#name:server`) points to.
    pub async fn resolve_alias(&self, alias: &str) -> String {
        let answer = self
            .call(Method::GET, &["directory", "room", alias], None)
            .await;
        string(&answer, "room_id")
    }

    /// Any client API request, by the unencoded segments of its path after
    /// `/_matrix/client/v3/`; returns the JSON answer.
    pub async fn request(&self, method: Method, segments: &[&str], body: Option<Value>) -> Value {
        self.call(method, segments, body).await
    }

    /// The next event of a room that `wanted` accepts, within `timeout`: first among the
    /// buffered ones, then from `/sync`. Events skipped meanwhile stay buffered.
    ///
    /// Events are in the client format of `/sync` plus `room_id`. The joined rooms' timelines
    /// count, the stripped state of an invitation (so an invitee sees its `invite`), and the
    /// timelines of rooms left (so a kicked user sees its kick). The first sync of a client
    /// brings each room's recent timeline; [`catch_up`](Self::catch_up) skips it.
    pub async fn next_event(
        &self,
        room_id: &str,
        wanted: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Value {
        match self.try_next_event(room_id, wanted, timeout).await {
            Ok(event) => event,
            Err(seen) => panic!(
                "{}: no wanted event in {room_id} within {timeout:?}; unwanted: {seen}",
                self.user_id
            ),
        }
    }

    /// Every event of a room's timeline, oldest first, as `/messages` pages it (not `/sync`,
    /// whose timeline skips what was more than its limit behind).
    pub async fn room_messages(&self, room_id: &str) -> Vec<Value> {
        let room_id = self.room_id(room_id).await;
        let mut events = Vec::new();
        let mut from: Option<String> = None;
        loop {
            let mut url = self.endpoint(&["rooms", &room_id, "messages"]);
            {
                let mut query = url.query_pairs_mut();
                query.append_pair("dir", "b");
                query.append_pair("limit", "1000");
                if let Some(from) = &from {
                    query.append_pair("from", from);
                }
            }
            let answer: Value = self
                .http
                .get(url)
                .bearer_auth(&self.access_token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let chunk = answer["chunk"].as_array().cloned().unwrap_or_default();
            if chunk.is_empty() {
                break;
            }
            events.extend(chunk);
            match answer["end"].as_str() {
                Some(end) => from = Some(end.to_owned()),
                None => break,
            }
        }
        events.reverse();
        events
    }

    /// [`next_event`](Self::next_event), or what else is buffered when none comes in time.
    pub async fn try_next_event(
        &self,
        room_id: &str,
        wanted: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Result<Value, String> {
        let room_id = self.room_id(room_id).await;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(event) = self.take_buffered(&room_id, &wanted) {
                return Ok(event);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(self.buffered_summary(&room_id));
            }
            self.sync_once(left).await;
        }
    }

    /// Assert that no event of a room that `unwanted` accepts arrives (or is buffered) within
    /// `quiet`. Other events stay buffered.
    pub async fn nothing_matching(
        &self,
        room_id: &str,
        unwanted: impl Fn(&Value) -> bool,
        quiet: Duration,
    ) {
        let room_id = self.room_id(room_id).await;
        let deadline = Instant::now() + quiet;
        loop {
            if let Some(event) = self.take_buffered(&room_id, &unwanted) {
                panic!("{}: unwanted event in {room_id}: {event}", self.user_id);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            self.sync_once(left).await;
        }
    }

    /// Sync once and forget every event so far: later waits see only newer events.
    pub async fn catch_up(&self) {
        self.sync_once(Duration::ZERO).await;
        self.sync.lock().unwrap().buffer.clear();
    }

    /// A room id for a room id or an alias.
    async fn room_id(&self, room: &str) -> String {
        if room.starts_with('#') {
            self.resolve_alias(room).await
        } else {
            room.to_owned()
        }
    }

    /// The next invitation of this user to any room (its member event, with `room_id`).
    pub async fn next_invite(&self, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let found = {
                let mut sync = self.sync.lock().unwrap();
                sync.buffer.values_mut().find_map(|events| {
                    let index = events.iter().position(|e| {
                        e["type"] == "m.room.member"
                            && e["state_key"] == self.user_id.as_str()
                            && e["content"]["membership"] == "invite"
                    })?;
                    events.remove(index)
                })
            };
            if let Some(invite) = found {
                return invite;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{}: no invitation within {timeout:?}",
                self.user_id
            );
            self.sync_once(left).await;
        }
    }

    fn take_buffered(&self, room_id: &str, wanted: &impl Fn(&Value) -> bool) -> Option<Value> {
        let mut sync = self.sync.lock().unwrap();
        let events = sync.buffer.get_mut(room_id)?;
        let index = events.iter().position(wanted)?;
        events.remove(index)
    }

    fn buffered_summary(&self, room_id: &str) -> String {
        let sync = self.sync.lock().unwrap();
        let events = sync.buffer.get(room_id).into_iter().flatten();
        let summary: Vec<String> = events
            .map(|e| format!("{} {} {}", e["type"], e["sender"], e["content"]))
            .collect();
        let mut summary = format!("[{}]", summary.join(", "));
        if let Some(error) = &sync.last_error {
            summary.push_str(&format!("; last /sync failed: {error}"));
        }
        summary
    }

    /// One `/sync` long-poll of at most `timeout`, its events into the buffer. A homeserver
    /// that is away (restarting, frozen) is not an error here: the caller syncs again until
    /// its deadline, and reports the last such error if it passes.
    async fn sync_once(&self, timeout: Duration) {
        let since = self.sync.lock().unwrap().since.clone();
        let mut url = self.endpoint(&["sync"]);
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("filter", FILTER);
            query.append_pair("timeout", &timeout.as_millis().to_string());
            if let Some(since) = &since {
                query.append_pair("since", since);
            }
        }
        let request = self
            .http
            .get(url)
            .bearer_auth(&self.access_token)
            .timeout(timeout + Duration::from_secs(5));
        let answer = match request.send().await {
            Ok(answer) => answer,
            Err(e) => return self.sync_failed(e.to_string(), timeout).await,
        };
        let status = answer.status();
        let text = match answer.text().await {
            Ok(text) => text,
            Err(e) => return self.sync_failed(e.to_string(), timeout).await,
        };
        if status.is_server_error() {
            // Starting or stopping.
            return self.sync_failed(format!("{status} {text}"), timeout).await;
        }
        assert!(
            status.is_success(),
            "{}: GET /sync: {status} {text}",
            self.user_id
        );
        let answer: Value = serde_json::from_str(&text).unwrap();
        let mut sync = self.sync.lock().unwrap();
        // Another wait may have synced meanwhile; keep the newest position only.
        if sync.since != since {
            return;
        }
        sync.since = Some(string(&answer, "next_batch"));
        sync.last_error = None;
        let rooms = &answer["rooms"];
        let sections = [
            ("join", "timeline", "events"),
            // Typing and read receipts, buffered with the room's events (no `sender`).
            ("join", "ephemeral", "events"),
            ("invite", "invite_state", "events"),
            ("leave", "timeline", "events"),
        ];
        for (section, part, list) in sections {
            let Some(rooms) = rooms[section].as_object() else {
                continue;
            };
            for (room_id, room) in rooms {
                let Some(events) = room[part][list].as_array() else {
                    continue;
                };
                let buffer = sync.buffer.entry(room_id.clone()).or_default();
                for event in events {
                    let mut event = event.clone();
                    event["room_id"] = json!(room_id);
                    buffer.push_back(event);
                }
            }
        }
    }

    /// Note a sync that got no answer, and pause a little before the caller's next try.
    async fn sync_failed(&self, error: String, timeout: Duration) {
        self.sync.lock().unwrap().last_error = Some(error);
        tokio::time::sleep(timeout.min(Duration::from_millis(100))).await;
    }

    /// The URL of a client API endpoint, from its unencoded path segments.
    fn endpoint(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("an http URL")
            .pop_if_empty()
            .extend(["_matrix", "client", "v3"])
            .extend(segments);
        url
    }

    async fn call(&self, method: Method, segments: &[&str], body: Option<Value>) -> Value {
        let (status, answer) = self.try_call(method.clone(), segments, body).await;
        self.check(&method, segments, status, answer)
    }

    fn check(
        &self,
        method: &Method,
        segments: &[&str],
        status: reqwest::StatusCode,
        answer: String,
    ) -> Value {
        let path = segments.join("/");
        assert!(
            status.is_success(),
            "{}: {method} {path}: {status} {answer}",
            self.user_id
        );
        serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{path}: {e}: {answer}"))
    }

    async fn try_call(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<Value>,
    ) -> (reqwest::StatusCode, String) {
        let url = self.endpoint(segments);
        let mut request = self
            .http
            .request(method.clone(), url)
            .bearer_auth(&self.access_token)
            .timeout(Duration::from_secs(30));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}: {method} {}: {e}", self.user_id, segments.join("/")));
        let status = answer.status();
        (status, answer.text().await.unwrap_or_default())
    }
}

/// A transaction id never used before by any client of this test process, nor by an earlier
/// run (Synapse remembers transaction ids per access token for a while, across restarts).
fn txn_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static START: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
    let start = START.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    });
    format!("causeway-{start}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A string field of a JSON answer, or a panic that shows the answer.
fn string(value: &Value, key: &str) -> String {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("no string {key:?} in {value}"))
        .to_owned()
}
