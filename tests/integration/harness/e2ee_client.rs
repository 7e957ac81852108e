//! A real end-to-end encrypted Matrix client for the tests: a matrix-sdk device with its
//! own crypto store, as Element would be, for what the plain [`MatrixClient`] cannot do —
//! read and write encrypted rooms, set up secure backup, judge another device's trust.
//!
//! A background task syncs all the time (so room keys, device lists and memberships arrive
//! as they would in a running client) and buffers each room's timeline; [`E2eeClient::next_text`]
//! takes from that buffer, so a message that came before the wait is not missed.
//!
//! [`MatrixClient`]: super::matrix_client::MatrixClient

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use matrix_sdk::config::SyncSettings;
use matrix_sdk::deserialized_responses::TimelineEvent;
use matrix_sdk::encryption::verification::{
    SasVerification, Verification, VerificationRequestState,
};
use matrix_sdk::ruma::api::client::room::create_room::v3::{Request as CreateRoom, RoomPreset};
use matrix_sdk::ruma::api::client::uiaa;
use matrix_sdk::ruma::events::key::verification::request::ToDeviceKeyVerificationRequestEvent;
use matrix_sdk::ruma::events::room::encryption::RoomEncryptionEventContent;
use matrix_sdk::ruma::events::room::member::MembershipState;
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;
use matrix_sdk::ruma::events::InitialStateEvent;
use matrix_sdk::ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId};
use matrix_sdk::sync::JoinedRoomUpdate;
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// How long one background sync waits for news: short, so a stopped test ends quickly.
const LONG_POLL: Duration = Duration::from_secs(1);

/// One device of a Matrix user, with end-to-end encryption.
#[derive(Debug)]
pub struct E2eeClient {
    sdk: matrix_sdk::Client,
    /// For the user-interactive authentication of the cross-signing upload.
    password: String,
    /// What the sync brought, and the sync's count, bumped after each one.
    seen: Arc<Mutex<Seen>>,
    synced: watch::Receiver<u64>,
    sync_task: JoinHandle<()>,
    /// The state and crypto stores; removed when the client goes.
    _store: tempfile::TempDir,
}

/// The timeline as the background sync saw it.
#[derive(Debug, Default)]
struct Seen {
    /// Per room id, the events no wait took yet, oldest first.
    rooms: HashMap<String, VecDeque<Line>>,
    /// Why the last sync failed, if it did.
    last_error: Option<String>,
}

/// One timeline event, as much as the tests need of it.
#[derive(Debug)]
struct Line {
    sender: String,
    /// The content of a decrypted (or plain) `m.room.message`; `None` for anything else.
    content: Option<Value>,
    /// What it was, for the failure message of a wait.
    summary: String,
}

impl E2eeClient {
    /// Log in as `localpart` (registered already) on the homeserver at `synapse_url`, as a
    /// new device with a fresh store; its first sync done (device keys uploaded), the
    /// background sync running.
    pub async fn login(synapse_url: &str, localpart: &str, password: &str) -> E2eeClient {
        let store = tempfile::tempdir().unwrap();
        let sdk = matrix_sdk::Client::builder()
            .homeserver_url(synapse_url)
            .sqlite_store(store.path(), None)
            .build()
            .await
            .unwrap_or_else(|e| panic!("{localpart}: cannot build the client: {e}"));
        sdk.matrix_auth()
            .login_username(localpart, password)
            .initial_device_display_name("e2ee test client")
            .send()
            .await
            .unwrap_or_else(|e| panic!("{localpart}: cannot log in: {e}"));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let first = sdk
            .sync_once(SyncSettings::default())
            .await
            .unwrap_or_else(|e| panic!("{localpart}: first sync: {e}"));
        seen.lock().unwrap().take(first.rooms.joined);
        let (count, synced) = watch::channel(0);
        let sync_task = tokio::spawn(sync_forever(sdk.clone(), seen.clone(), count));
        E2eeClient {
            sdk,
            password: password.to_owned(),
            seen,
            synced,
            sync_task,
            _store: store,
        }
    }

    /// The full user id, `@localpart:server`.
    pub fn user_id(&self) -> String {
        self.sdk.user_id().expect("logged in").to_string()
    }

    /// Create a room encrypted with megolm from its first event, inviting `invite` (user
    /// ids); a `direct` one is a direct chat (`is_direct`, and in this user's `m.direct`).
    /// Its id.
    pub async fn create_encrypted_room(&self, invite: &[&str], direct: bool) -> String {
        let mut request = CreateRoom::new();
        request.invite = invite.iter().map(|id| user_id(id)).collect();
        request.is_direct = direct;
        request.preset = Some(if direct {
            RoomPreset::TrustedPrivateChat
        } else {
            RoomPreset::PrivateChat
        });
        let encryption = RoomEncryptionEventContent::with_recommended_defaults();
        request.initial_state =
            vec![InitialStateEvent::with_empty_state_key(encryption).to_raw_any()];
        let room = self
            .sdk
            .create_room(request)
            .await
            .unwrap_or_else(|e| panic!("{}: cannot create a room: {e}", self.user_id()));
        room.room_id().to_string()
    }

    /// Wait until this client's sync shows `user` joined in `room`.
    pub async fn wait_joined(&self, room: &str, user: &str, timeout: Duration) {
        let (room, user) = (room_id(room), user_id(user));
        self.wait(timeout, || async {
            let room = self.sdk.get_room(&room)?;
            let member = room.get_member_no_sync(&user).await.ok()??;
            (*member.membership() == MembershipState::Join).then_some(())
        })
        .await
        .unwrap_or_else(|| panic!("{}: {user} not joined in {room}", self.user_id()));
    }

    /// Send an `m.text` message, encrypted when the room is; its event id.
    pub async fn send_text(&self, room: &str, body: &str) -> String {
        let id = room_id(room);
        let Some(joined) = self.sdk.get_room(&id) else {
            panic!("{}: {room} is not known", self.user_id())
        };
        let sent = joined
            .send(RoomMessageEventContent::text_plain(body))
            .await
            .unwrap_or_else(|e| panic!("{}: cannot send to {room}: {e}", self.user_id()));
        sent.response.event_id.to_string()
    }

    /// The body of the next `m.room.message` from `sender` in `room`, decrypted, within
    /// `timeout`: first among those buffered, then from the sync. Anything else stays
    /// buffered; the panic on timeout lists it (undecryptable events among it).
    pub async fn next_text(&self, room: &str, sender: &str, timeout: Duration) -> String {
        let content = self.next_message(room, sender, timeout).await;
        content["body"].as_str().unwrap_or_default().to_owned()
    }

    /// Send a file as Element does (encrypted when the room is); its event id.
    pub async fn send_file(&self, room: &str, name: &str, mimetype: &str, data: Vec<u8>) -> String {
        let id = room_id(room);
        let joined = self.sdk.get_room(&id).expect("a known room");
        let mime: mime::Mime = mimetype.parse().unwrap();
        let config = matrix_sdk::attachment::AttachmentConfig::new();
        let sent = joined
            .send_attachment(name, &mime, data, config)
            .await
            .unwrap_or_else(|e| panic!("{}: cannot send a file to {room}: {e}", self.user_id()));
        sent.event_id.to_string()
    }

    /// The content of the file a message's `content` carries, decrypted.
    pub async fn file_of(&self, content: &Value) -> Vec<u8> {
        use matrix_sdk::media::{MediaFormat, MediaRequestParameters};
        use matrix_sdk::ruma::events::room::MediaSource;
        let source = match content.get("file") {
            Some(file) => {
                MediaSource::Encrypted(Box::new(serde_json::from_value(file.clone()).unwrap()))
            }
            None => MediaSource::Plain(serde_json::from_value(content["url"].clone()).unwrap()),
        };
        let request = MediaRequestParameters {
            source,
            format: MediaFormat::File,
        };
        self.sdk
            .media()
            .get_media_content(&request, false)
            .await
            .unwrap()
    }

    /// The content of the next `m.room.message` from `sender` in `room`, decrypted, within
    /// `timeout`, as [`E2eeClient::next_text`] waits.
    pub async fn next_message(&self, room: &str, sender: &str, timeout: Duration) -> Value {
        let found = self
            .wait(timeout, || async {
                let mut seen = self.seen.lock().unwrap();
                let lines = seen.rooms.get_mut(room)?;
                let at = lines
                    .iter()
                    .position(|l| l.sender == sender && l.content.is_some())?;
                lines.remove(at)?.content
            })
            .await;
        found.unwrap_or_else(|| {
            let seen = self.seen.lock().unwrap();
            let lines = seen.rooms.get(room).into_iter().flatten();
            let lines: Vec<&str> = lines.map(|l| l.summary.as_str()).collect();
            panic!(
                "{}: no text from {sender} in {room} within {timeout:?}; saw [{}]; last sync \
                 error: {:?}",
                self.user_id(),
                lines.join(", "),
                seen.last_error
            )
        })
    }

    /// Set up secure backup as Element does: cross-signing keys made (the password answers
    /// the homeserver's authentication), secret storage holding them and the key backup's
    /// key, the room keys backed up. The recovery key.
    pub async fn enable_recovery(&self) -> String {
        let encryption = self.sdk.encryption();
        if let Err(e) = encryption.bootstrap_cross_signing(None).await {
            let Some(asked) = e.as_uiaa_response() else {
                panic!("{}: cannot make cross-signing keys: {e}", self.user_id())
            };
            let me = uiaa::MatrixUserIdentifier::new(self.user_id());
            let mut password =
                uiaa::Password::new(uiaa::UserIdentifier::Matrix(me), self.password.clone());
            password.session = asked.session.clone();
            encryption
                .bootstrap_cross_signing(Some(uiaa::AuthData::Password(password)))
                .await
                .unwrap_or_else(|e| panic!("{}: cross-signing refused: {e}", self.user_id()));
        }
        encryption
            .recovery()
            .enable()
            .wait_for_backups_to_upload()
            .await
            .unwrap_or_else(|e| panic!("{}: cannot enable recovery: {e}", self.user_id()))
    }

    /// Whether this client, having fetched `user`'s keys afresh, sees their device
    /// `device` as signed by its owner's cross-signing key and so verified.
    pub async fn is_device_verified(&self, user: &str, device: &str) -> bool {
        let encryption = self.sdk.encryption();
        let user = user_id(user);
        encryption
            .request_user_identity(&user)
            .await
            .unwrap_or_else(|e| panic!("{}: cannot fetch the keys of {user}: {e}", self.user_id()));
        let found = encryption.get_device(&user, device.into()).await;
        let found = found.unwrap_or_else(|e| panic!("{}: crypto store: {e}", self.user_id()));
        let Some(found) = found else {
            panic!("{}: no device {device} of {user}", self.user_id())
        };
        found.is_cross_signed_by_owner() && found.is_verified()
    }

    /// Wait until this client knows `user`'s device `device` (its keys fetched), so that
    /// what it sends next is encrypted for that device too.
    pub async fn wait_device(&self, user: &str, device: &str, timeout: Duration) {
        let user = user_id(user);
        let encryption = self.sdk.encryption();
        self.wait(timeout, || async {
            encryption.request_user_identity(&user).await.ok()?;
            encryption
                .get_device(&user, device.into())
                .await
                .ok()?
                .map(|_| ())
        })
        .await
        .unwrap_or_else(|| panic!("{}: no device {device} of {user}", self.user_id()));
    }

    /// From now on, the verification requests this device receives: (sender, flow id).
    pub fn verification_requests(&self) -> mpsc::UnboundedReceiver<(OwnedUserId, String)> {
        let (sender, requests) = mpsc::unbounded_channel();
        self.sdk
            .add_event_handler(move |event: ToDeviceKeyVerificationRequestEvent| {
                let flow = event.content.transaction_id.to_string();
                let _ = sender.send((event.sender, flow));
                async {}
            });
        requests
    }

    /// As a user does in Element: accept the next verification request of `requests`, then
    /// the emoji comparison the other session starts. The comparison, and the emoji this
    /// device shows (`🐶 Dog`).
    pub async fn accept_comparison(
        &self,
        requests: &mut mpsc::UnboundedReceiver<(OwnedUserId, String)>,
        timeout: Duration,
    ) -> (SasVerification, Vec<String>) {
        let me = self.user_id();
        let deadline = tokio::time::Instant::now() + timeout;
        let (sender, flow) = tokio::time::timeout_at(deadline, requests.recv())
            .await
            .unwrap_or_else(|_| panic!("{me}: no verification request within {timeout:?}"))
            .expect("the handler lives as long as the client");
        let encryption = self.sdk.encryption();
        let request = encryption
            .get_verification_request(&sender, &flow)
            .await
            .unwrap_or_else(|| panic!("{me}: request {flow} unknown"));
        request.accept().await.unwrap();
        let mut changes = request.changes();
        let sas = loop {
            if let VerificationRequestState::Transitioned {
                verification: Verification::SasV1(sas),
                ..
            } = request.state()
            {
                break sas;
            }
            let next = tokio::time::timeout_at(deadline, changes.next()).await;
            assert!(next.is_ok(), "{me}: no emoji comparison started");
        };
        sas.accept().await.unwrap();
        let mut changes = sas.changes();
        while sas.emoji().is_none() {
            assert!(!sas.is_cancelled(), "{me}: {:?}", sas.cancel_info());
            let next = tokio::time::timeout_at(deadline, changes.next()).await;
            assert!(next.is_ok(), "{me}: no keys exchanged: {:?}", sas.state());
        }
        let emoji = sas.emoji().unwrap();
        let shown = emoji
            .iter()
            .map(|e| format!("{} {}", e.symbol, e.description));
        (sas, shown.collect())
    }

    /// Try `probe` after each sync until it answers or `timeout` passes.
    async fn wait<T, F: std::future::Future<Output = Option<T>>>(
        &self,
        timeout: Duration,
        probe: impl Fn() -> F,
    ) -> Option<T> {
        let deadline = Instant::now() + timeout;
        let mut synced = self.synced.clone();
        loop {
            synced.mark_unchanged();
            if let Some(found) = probe().await {
                return Some(found);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if tokio::time::timeout(left, synced.changed()).await.is_err() {
                return probe().await;
            }
        }
    }
}

impl Drop for E2eeClient {
    fn drop(&mut self) {
        self.sync_task.abort();
    }
}

/// Sync until aborted, each sync's timelines into `seen`, each sync counted in `count`.
async fn sync_forever(sdk: matrix_sdk::Client, seen: Arc<Mutex<Seen>>, count: watch::Sender<u64>) {
    loop {
        match sdk
            .sync_once(SyncSettings::default().timeout(LONG_POLL))
            .await
        {
            Ok(response) => {
                let mut seen = seen.lock().unwrap();
                seen.last_error = None;
                seen.take(response.rooms.joined);
            }
            Err(e) => {
                seen.lock().unwrap().last_error = Some(e.to_string());
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        count.send_modify(|n| *n += 1);
    }
}

impl Seen {
    /// Buffer the joined rooms' timelines of one sync.
    fn take(&mut self, joined: BTreeMap<OwnedRoomId, JoinedRoomUpdate>) {
        for (room, update) in joined {
            let lines = self.rooms.entry(room.to_string()).or_default();
            lines.extend(update.timeline.events.iter().map(Line::of));
        }
    }
}

impl Line {
    fn of(event: &TimelineEvent) -> Line {
        let json: Value = event.raw().deserialize_as().unwrap_or_default();
        let sender = json["sender"].as_str().unwrap_or_default().to_owned();
        let kind = json["type"].as_str().unwrap_or_default();
        let content = (kind == "m.room.message").then(|| json["content"].clone());
        let summary = if event.kind.is_utd() {
            format!("undecryptable {kind} from {sender}")
        } else {
            format!("{kind} from {sender}: {}", json["content"])
        };
        Line {
            sender,
            content,
            summary,
        }
    }
}

fn room_id(room: &str) -> OwnedRoomId {
    <&RoomId>::try_from(room)
        .unwrap_or_else(|e| panic!("{room}: {e}"))
        .to_owned()
}

fn user_id(user: &str) -> OwnedUserId {
    <&UserId>::try_from(user)
        .unwrap_or_else(|e| panic!("{user}: {e}"))
        .to_owned()
}
