//! Channel lists: disco#items on a server JID answered from the network's list (IRC's
//! LIST), paged with XEP-0059. A list fetched in the last two minutes serves further pages;
//! requests that arrive while one is being fetched wait for it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use causeway_bridge::{Action, BridgeError, UserRef};
use tokio_xmpp::jid::{BareJid, FullJid, Jid};
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::rsm::SetQuery;
use tokio_xmpp::parsers::stanza_error::{DefinedCondition, ErrorType};
use tokio_xmpp::Stanza;

use super::{Effects, Muc, OnError, Request};
use crate::address::IrcAddressing;
use crate::gateway::stanzas::error;

/// How long a channel list serves further pages before LIST is sent again.
const LIST_FRESH: Duration = Duration::from_secs(120);

/// One entry of a channel list: name, member count, topic.
type ListedRoom = (String, u32, String);

/// Whose list on which server: (user, lower-cased server).
type ListKey = (BareJid, String);

/// A disco#items request on a server JID, waiting for the channel list.
#[derive(Debug)]
struct PendingList {
    requester: FullJid,
    iq_id: String,
    rsm: Option<SetQuery>,
}

/// The channel lists of every user and server.
#[derive(Debug, Default)]
pub(super) struct RoomLists {
    /// Lists by (user, server), with when they came.
    fetched: HashMap<ListKey, (Instant, Vec<ListedRoom>)>,
    /// disco#items requests waiting for a list.
    waiting: HashMap<ListKey, Vec<PendingList>>,
}

impl Muc {
    /// disco#items on a server JID: the channel list, from the one fetched in the last two
    /// minutes, else once the puppet has it.
    pub fn list_rooms(
        &mut self,
        requester: FullJid,
        server: String,
        iq_id: String,
        payload: &Element,
    ) -> Effects {
        let mut fx = Effects::default();
        let rsm = tokio_xmpp::parsers::disco::DiscoItemsQuery::try_from(payload.clone())
            .ok()
            .and_then(|q| q.rsm);
        let key = (requester.to_bare(), server.to_ascii_lowercase());
        let pending = PendingList {
            requester,
            iq_id,
            rsm,
        };
        if let Some((at, rooms)) = self.lists.fetched.get(&key) {
            if at.elapsed() < LIST_FRESH {
                fx.stanzas
                    .push(answer_list(&self.addressing, &server, rooms, &pending));
                return fx;
            }
        }
        let waiting = self.lists.waiting.entry(key.clone()).or_default();
        waiting.push(pending);
        if waiting.len() == 1 {
            fx.requests.push(Request {
                user: UserRef(key.0.to_string()),
                action: Action::ListRooms { server },
                on_error: OnError::List(key.0, key.1),
            });
        }
        fx
    }

    /// The network's list came: answer everyone waiting, and keep it for further pages.
    pub(super) fn room_list(
        &mut self,
        fx: &mut Effects,
        user: &BareJid,
        server: String,
        rooms: Vec<ListedRoom>,
    ) {
        let key = (user.clone(), server.to_ascii_lowercase());
        for pending in self.lists.waiting.remove(&key).unwrap_or_default() {
            fx.stanzas
                .push(answer_list(&self.addressing, &server, &rooms, &pending));
        }
        self.lists.fetched.insert(key, (Instant::now(), rooms));
    }

    /// The network could not list: every request waiting gets an error.
    pub(super) fn list_failed(
        &mut self,
        user: BareJid,
        server: String,
        err: &BridgeError,
    ) -> Vec<Stanza> {
        let from = list_jid(&self.addressing, &server);
        self.lists
            .waiting
            .remove(&(user, server))
            .unwrap_or_default()
            .into_iter()
            .map(|p| {
                let error = error(
                    ErrorType::Cancel,
                    DefinedCondition::RemoteServerNotFound,
                    format!("{err}: join a channel on this server first"),
                );
                Iq::Error {
                    from: from.clone(),
                    to: Some(p.requester.into()),
                    id: p.iq_id,
                    error,
                    payload: None,
                }
                .into()
            })
            .collect()
    }
}

/// Where a list comes from: the server's JID, or the service's own for its list.
fn list_jid(addressing: &IrcAddressing, server: &str) -> Option<Jid> {
    match server.is_empty() {
        true => addressing.gateway_jid().map(Jid::from).ok(),
        false => addressing.server_jid(server).map(Jid::from).ok(),
    }
}

/// One page of `rooms` for `pending`, as a disco#items result from the server JID.
fn answer_list(
    addressing: &IrcAddressing,
    server: &str,
    rooms: &[ListedRoom],
    pending: &PendingList,
) -> Stanza {
    use tokio_xmpp::parsers::disco::{DiscoItemsResult, Item};
    use tokio_xmpp::parsers::rsm::{First, SetResult};
    let mut sorted: Vec<&ListedRoom> = rooms.iter().collect();
    sorted.sort_by_key(|room| room.0.to_lowercase());
    let ids: Vec<Option<BareJid>> = sorted
        .iter()
        .map(|(name, _, _)| addressing.channel_jid(server, name).ok())
        .collect();
    let position = |id: &str| {
        ids.iter()
            .position(|j| j.as_ref().is_some_and(|j| j.to_string() == id))
    };
    let (max, after, before) = match &pending.rsm {
        Some(q) => (
            q.max.unwrap_or(usize::MAX),
            q.after.clone(),
            q.before.clone(),
        ),
        None => (usize::MAX, None, None),
    };
    let (start, end) = match (after, before) {
        (Some(after), _) => {
            let start = position(&after).map_or(sorted.len(), |p| p + 1);
            (start, start.saturating_add(max).min(sorted.len()))
        }
        (None, Some(before)) => {
            let end = if before.is_empty() {
                sorted.len()
            } else {
                position(&before).unwrap_or(0)
            };
            (end.saturating_sub(max), end)
        }
        (None, None) => (0, max.min(sorted.len())),
    };
    let items: Vec<Item> = (start..end)
        .filter_map(|i| {
            let (name, count, topic) = sorted[i];
            let jid = ids[i].clone()?;
            let label = if topic.is_empty() {
                format!("{name} ({count})")
            } else {
                format!("{name} ({count}) – {topic}")
            };
            Some(Item {
                jid: jid.into(),
                node: None,
                name: Some(label),
            })
        })
        .collect();
    let rsm = pending.rsm.as_ref().map(|_| SetResult {
        first: items.first().map(|i| First {
            index: Some(start),
            item: i.jid.to_string(),
        }),
        last: items.last().map(|i| i.jid.to_string()),
        count: Some(sorted.len()),
    });
    let from = list_jid(addressing, server);
    let result = DiscoItemsResult {
        node: None,
        items,
        rsm,
    };
    Iq::Result {
        from,
        to: Some(pending.requester.clone().into()),
        id: pending.iq_id.clone(),
        payload: Some(result.into()),
    }
    .into()
}
