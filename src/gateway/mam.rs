//! XEP-0313 message archive management on room JIDs, and MUC join history, both read from
//! the per-user archive.

use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio_xmpp::jid::{BareJid, FullJid, Jid};
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::date::DateTime;
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::message::{Message, MessageType};
use tokio_xmpp::parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};
use tokio_xmpp::Stanza;

use super::stanzas::nc;
use super::stanzas::rfc3339;
use crate::store::{ArchivePage, ArchiveQuery, ArchivedMessage};

/// XEP-0313's namespace.
pub const MAM: &str = "urn:xmpp:mam:2";
/// XEP-0359's namespace.
pub const SID: &str = "urn:xmpp:sid:0";
const RSM: &str = "http://jabber.org/protocol/rsm";
const DATA_FORMS: &str = "jabber:x:data";
const FORWARD: &str = "urn:xmpp:forward:0";
const DELAY: &str = "urn:xmpp:delay";
const CLIENT: &str = "jabber:client";
/// Results per page when the client does not say, and at most.
const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 250;

/// A MAM query to answer once the archive has been read.
#[derive(Debug, Clone)]
pub struct MamRequest {
    /// The iq's id, for the final result.
    pub iq_id: String,
    /// Who asked.
    pub requester: FullJid,
    /// The room (the iq's `to`).
    pub room: BareJid,
    /// The client's queryid, echoed in every result.
    pub queryid: Option<String>,
    /// What to read.
    pub query: ArchiveQuery,
}

/// Join history to insert into a join sequence.
#[derive(Debug, Clone)]
pub struct HistoryRequest {
    /// Where in the effects' stanzas the history goes (before the subject).
    pub position: usize,
    /// The joining resource.
    pub to: FullJid,
    /// The room.
    pub room: BareJid,
    /// What to read (newest first, limited).
    pub query: ArchiveQuery,
    /// `maxchars`: at most this many characters of bodies in all.
    pub max_chars: Option<usize>,
}

/// Limits a joining client asked for (`<history/>`), or the default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistoryLimits {
    /// `maxstanzas`.
    pub max_stanzas: Option<usize>,
    /// `maxchars`.
    pub max_chars: Option<usize>,
    /// `seconds`.
    pub seconds: Option<u64>,
    /// `since`, in ms.
    pub since_ms: Option<i64>,
}

impl HistoryLimits {
    /// Read `<history/>` from a MUC join payload.
    pub fn from_join(x: Option<&Element>) -> HistoryLimits {
        let Some(history) = x.and_then(|x| x.children().find(|c| c.name() == "history")) else {
            return HistoryLimits::default();
        };
        HistoryLimits {
            max_stanzas: history.attr("maxstanzas").and_then(|v| v.parse().ok()),
            max_chars: history.attr("maxchars").and_then(|v| v.parse().ok()),
            seconds: history.attr("seconds").and_then(|v| v.parse().ok()),
            since_ms: history.attr("since").and_then(parse_date_ms),
        }
    }

    /// The archive query for these limits, with `default_lines` when the client set none.
    pub fn query(
        &self,
        user: &str,
        room: &str,
        default_lines: usize,
    ) -> (ArchiveQuery, Option<usize>) {
        let mut start = self.since_ms;
        if let Some(seconds) = self.seconds {
            let from = now_ms() - i64::try_from(seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
            start = Some(start.map_or(from, |s| s.max(from)));
        }
        let max =
            self.max_stanzas
                .unwrap_or(if self.seconds.is_some() || self.since_ms.is_some() {
                    MAX_PAGE
                } else {
                    default_lines
                });
        let query = ArchiveQuery {
            user: user.to_owned(),
            room: room.to_owned(),
            start_ms: start,
            newest: true,
            max: max.min(MAX_PAGE),
            ..Default::default()
        };
        (query, self.max_chars)
    }
}

/// Parse a MAM query on `room` from `user`.
pub fn parse_query(
    payload: &Element,
    user: &BareJid,
    room: &BareJid,
) -> Result<(Option<String>, ArchiveQuery), StanzaError> {
    let bad = |text: String| {
        StanzaError::new(ErrorType::Modify, DefinedCondition::BadRequest, "en", text)
    };
    let mut query = ArchiveQuery {
        user: user.to_string(),
        room: room.to_string(),
        max: DEFAULT_PAGE,
        ..Default::default()
    };
    if let Some(form) = payload.get_child("x", DATA_FORMS) {
        for field in form.children().filter(|c| c.is("field", DATA_FORMS)) {
            let value = field
                .get_child("value", DATA_FORMS)
                .map(|v| v.text())
                .unwrap_or_default();
            match field.attr("var") {
                Some("start") => {
                    query.start_ms = Some(
                        parse_date_ms(&value).ok_or_else(|| bad(format!("bad start {value:?}")))?,
                    )
                }
                Some("end") => {
                    query.end_ms = Some(
                        parse_date_ms(&value).ok_or_else(|| bad(format!("bad end {value:?}")))?,
                    )
                }
                Some("with") => {
                    // In a room, `with` names an occupant: room@domain/nick.
                    let jid =
                        Jid::from_str(&value).map_err(|_| bad(format!("bad with {value:?}")))?;
                    query.with_nick =
                        Some(jid.resource().map(|r| r.to_string()).ok_or_else(|| {
                            bad("with must name an occupant, room@domain/nick".into())
                        })?);
                }
                Some("FORM_TYPE") | None => {}
                Some(other) => {
                    let text = format!("unsupported field {other:?}");
                    return Err(StanzaError::new(
                        ErrorType::Cancel,
                        DefinedCondition::FeatureNotImplemented,
                        "en",
                        text,
                    ));
                }
            }
        }
    }
    if let Some(set) = payload.get_child("set", RSM) {
        if let Some(max) = set.get_child("max", RSM) {
            query.max = max
                .text()
                .trim()
                .parse::<usize>()
                .map_err(|_| bad("bad <max/>".into()))?
                .min(MAX_PAGE);
        }
        if let Some(after) = set.get_child("after", RSM) {
            query.after = Some(after.text());
        }
        if let Some(before) = set.get_child("before", RSM) {
            match before.text() {
                // An empty <before/> asks for the last page.
                text if text.is_empty() => query.newest = true,
                text => query.before = Some(text),
            }
        }
    }
    Ok((payload.attr("queryid").map(str::to_owned), query))
}

/// The result messages of a MAM query and the final iq.
pub fn mam_results(request: &MamRequest, page: &ArchivePage) -> Vec<Stanza> {
    let mut out: Vec<Stanza> = page
        .messages
        .iter()
        .map(|m| {
            let mut result = Element::builder("result", MAM).attr(nc("id"), m.stanza_id.as_str());
            if let Some(queryid) = &request.queryid {
                result = result.attr(nc("queryid"), queryid.as_str());
            }
            let result = result.append(forwarded(m, &request.room)).build();
            let mut message = Message::new(Some(request.requester.clone().into()));
            message.type_ = MessageType::Normal;
            message.from = Some(request.room.clone().into());
            message.payloads.push(result);
            message.into()
        })
        .collect();
    let mut set = Element::builder("set", RSM);
    if let (Some(first), Some(last)) = (page.messages.first(), page.messages.last()) {
        set = set
            .append(
                Element::builder("first", RSM)
                    .append(first.stanza_id.as_str())
                    .build(),
            )
            .append(
                Element::builder("last", RSM)
                    .append(last.stanza_id.as_str())
                    .build(),
            );
    }
    set = set.append(
        Element::builder("count", RSM)
            .append(page.count.to_string())
            .build(),
    );
    let mut fin = Element::builder("fin", MAM);
    if page.complete {
        fin = fin.attr(nc("complete"), "true");
    }
    let fin = fin.append(set.build()).build();
    let iq = Iq::Result {
        from: Some(request.room.clone().into()),
        to: Some(request.requester.clone().into()),
        id: request.iq_id.clone(),
        payload: Some(fin),
    };
    out.push(iq.into());
    out
}

/// Join history: the archived messages as delayed groupchat messages, oldest first,
/// trimmed to `maxchars` from the newest.
pub fn history_stanzas(request: &HistoryRequest, page: &ArchivePage) -> Vec<Stanza> {
    let mut messages: Vec<&ArchivedMessage> = page.messages.iter().collect();
    if let Some(max_chars) = request.max_chars {
        let mut budget = max_chars;
        let mut keep = Vec::new();
        for m in messages.iter().rev() {
            let size = m.body.chars().count();
            if size > budget {
                break;
            }
            budget -= size;
            keep.push(*m);
        }
        keep.reverse();
        messages = keep;
    }
    messages
        .into_iter()
        .filter_map(|m| {
            let from = request.room.with_resource_str(&m.sender).ok()?;
            let mut message = Message::groupchat(Some(request.to.clone().into()));
            message.from = Some(from.into());
            message.bodies.insert(Default::default(), m.body.clone());
            message.payloads.push(delay_element(m.at_ms, &request.room));
            message
                .payloads
                .push(stanza_id_element(&m.stanza_id, &request.room));
            Some(message.into())
        })
        .collect()
}

/// `<stanza-id xmlns='urn:xmpp:sid:0' by='room' id='…'/>`.
pub fn stanza_id_element(id: &str, room: &BareJid) -> Element {
    Element::builder("stanza-id", SID)
        .attr(nc("by"), room.to_string())
        .attr(nc("id"), id)
        .build()
}

fn delay_element(at_ms: i64, room: &BareJid) -> Element {
    let when = UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(at_ms).unwrap_or(0));
    Element::builder("delay", DELAY)
        .attr(nc("from"), room.to_string())
        .attr(nc("stamp"), rfc3339(when))
        .build()
}

/// The archived message as XEP-0297 forwards it: a `jabber:client` message, whatever the
/// component stream's namespace.
fn forwarded(m: &ArchivedMessage, room: &BareJid) -> Element {
    let from = room
        .with_resource_str(&m.sender)
        .map(|j| j.to_string())
        .unwrap_or_else(|_| room.to_string());
    let mut message = Element::builder("message", CLIENT)
        .attr(nc("type"), "groupchat")
        .attr(nc("from"), from)
        .append(
            Element::builder("body", CLIENT)
                .append(m.body.as_str())
                .build(),
        );
    if let Some(origin) = &m.origin_id {
        message = message.append(
            Element::builder("origin-id", SID)
                .attr(nc("id"), origin.as_str())
                .build(),
        );
    }
    Element::builder("forwarded", FORWARD)
        .append(delay_element(m.at_ms, room))
        .append(message.build())
        .build()
}

/// Milliseconds since the epoch of an XEP-0082 date-time.
pub fn parse_date_ms(text: &str) -> Option<i64> {
    DateTime::from_str(text)
        .ok()
        .map(|d| d.0.timestamp_millis())
}

/// Now, in milliseconds since the epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A fresh stanza-id: 128 random bits, so ids never repeat across restarts or databases.
pub fn new_stanza_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archived(i: i64, body: &str) -> ArchivedMessage {
        ArchivedMessage {
            stanza_id: format!("id{i}"),
            user: "alice@example.org".into(),
            room: "#r%s@gw".into(),
            sender: "bob".into(),
            body: body.into(),
            origin_id: None,
            at_ms: 1_000 + i,
        }
    }

    fn request(max_chars: Option<usize>) -> HistoryRequest {
        HistoryRequest {
            position: 0,
            to: "alice@example.org/phone".parse().unwrap(),
            room: "#r%s@gw".parse().unwrap(),
            query: ArchiveQuery::default(),
            max_chars,
        }
    }

    #[test]
    fn history_limits_become_queries() {
        let none = HistoryLimits::default();
        let (q, chars) = none.query("u", "r", 20);
        assert_eq!((q.max, q.newest, q.start_ms, chars), (20, true, None, None));
        let stanzas = HistoryLimits {
            max_stanzas: Some(0),
            ..Default::default()
        };
        assert_eq!(stanzas.query("u", "r", 20).0.max, 0);
        let since = HistoryLimits {
            since_ms: Some(5_000),
            ..Default::default()
        };
        let (q, _) = since.query("u", "r", 20);
        assert_eq!((q.start_ms, q.max), (Some(5_000), MAX_PAGE));
        let seconds = HistoryLimits {
            seconds: Some(60),
            since_ms: Some(1),
            ..Default::default()
        };
        let start = seconds.query("u", "r", 20).0.start_ms.unwrap();
        assert!(
            (now_ms() - 61_000..=now_ms() - 59_000).contains(&start),
            "the later of since and now - seconds"
        );
    }

    #[test]
    fn history_is_parsed_from_the_join() {
        let x = Element::builder("x", "http://jabber.org/protocol/muc")
            .append(
                Element::builder("history", "http://jabber.org/protocol/muc")
                    .attr(nc("maxchars"), "100")
                    .attr(nc("since"), "1970-01-01T00:00:05Z")
                    .build(),
            )
            .build();
        let limits = HistoryLimits::from_join(Some(&x));
        assert_eq!(
            (limits.max_chars, limits.since_ms, limits.max_stanzas),
            (Some(100), Some(5_000), None)
        );
    }

    #[test]
    fn maxchars_keeps_the_newest_that_fit() {
        let page = ArchivePage {
            messages: vec![archived(1, "aaaa"), archived(2, "bbbb"), archived(3, "cc")],
            complete: true,
            count: 3,
        };
        let bodies = |stanzas: Vec<Stanza>| -> Vec<String> {
            stanzas
                .into_iter()
                .map(|s| match s {
                    Stanza::Message(m) => m.bodies.values().next().cloned().unwrap(),
                    other => panic!("{other:?}"),
                })
                .collect()
        };
        assert_eq!(
            bodies(history_stanzas(&request(Some(6)), &page)),
            ["bbbb", "cc"]
        );
        assert_eq!(bodies(history_stanzas(&request(Some(5)), &page)), ["cc"]);
        assert_eq!(bodies(history_stanzas(&request(None), &page)).len(), 3);
    }
}
