//! Channel lists: disco#items on a server JID answered from the network's list (IRC's
//! LIST), paged with XEP-0059. A list fetched in the last two minutes serves further pages;
//! requests that arrive while one is being fetched wait for it.
//!
//! A room that holds rooms (a Matrix space) is listed as a node of the list's JID,
//! `space/<its name>`, the XEP-0030 way: disco#items on that node lists its rooms (asked of
//! the network with the room as `within`), and disco#info on it names it as a directory of
//! chatrooms — an identity Gajim's service browser opens with a Join button for the rooms
//! and Browse for the spaces among them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use causeway_bridge::{Action, BridgeError, ListedRoom, RoomRef, UserRef};
use tokio_xmpp::jid::{BareJid, FullJid, Jid};
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::rsm::SetQuery;
use tokio_xmpp::parsers::stanza_error::{DefinedCondition, ErrorType};
use tokio_xmpp::Stanza;

use super::{Effects, Muc, OnError, Request};
use crate::address::{IrcAddress, IrcAddressing};
use crate::gateway::stanzas::error;

/// How long a channel list serves further pages before LIST is sent again.
const LIST_FRESH: Duration = Duration::from_secs(120);

/// The disco node of a room that holds rooms, before the room's name.
pub const SPACE_NODE: &str = "space/";

/// Whose list of what: (user, lower-cased server, the room whose rooms it lists).
pub type ListKey = (BareJid, String, Option<RoomRef>);

/// A disco#items request on a server JID, waiting for the channel list.
#[derive(Debug)]
struct PendingList {
    requester: FullJid,
    iq_id: String,
    rsm: Option<SetQuery>,
    /// The node asked for (a room holding rooms), echoed in the answer.
    node: Option<String>,
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
    /// The room a disco node of `server`'s list names (`space/<name>`), if it names one.
    pub fn space_of(&self, server: &str, node: &str) -> Option<RoomRef> {
        let name = node.strip_prefix(SPACE_NODE)?;
        let jid = self.addressing.channel_jid(server, name).ok()?;
        match self.addressing.parse(&jid.into()).ok()? {
            IrcAddress::Channel {
                server,
                channel,
                nick: None,
            } => Some(RoomRef {
                server,
                name: channel,
            }),
            _ => None,
        }
    }

    /// How a list of `server` the user has been given shows the room holding rooms at
    /// disco `node`; `None` when no such room was listed to them.
    pub fn listed_space(&self, user: &BareJid, server: &str, node: &str) -> Option<String> {
        let name = node.strip_prefix(SPACE_NODE)?;
        let server = server.to_ascii_lowercase();
        self.lists
            .fetched
            .iter()
            .filter(|(key, _)| key.0 == *user && key.1 == server)
            .flat_map(|(_, (_, rooms))| rooms)
            .find(|room| room.holds_rooms && room.name == name)
            .map(label)
    }

    /// disco#items on a server JID: the channel list (with `within`, the rooms of that
    /// room, asked at that disco node), from the one fetched in the last two minutes, else
    /// once the puppet has it.
    pub fn list_rooms(
        &mut self,
        requester: FullJid,
        server: String,
        within: Option<(RoomRef, String)>,
        iq_id: String,
        payload: &Element,
    ) -> Effects {
        let mut fx = Effects::default();
        let rsm = tokio_xmpp::parsers::disco::DiscoItemsQuery::try_from(payload.clone())
            .ok()
            .and_then(|q| q.rsm);
        let (within, node) = within.unzip();
        let key = (requester.to_bare(), server.to_ascii_lowercase(), within);
        let pending = PendingList {
            requester,
            iq_id,
            rsm,
            node,
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
                action: Action::ListRooms {
                    server,
                    within: key.2.clone(),
                },
                on_error: OnError::List(key),
            });
        }
        fx
    }

    /// The network's list came: answer everyone waiting, and keep it for further pages.
    /// A list the network could not make is an error for them.
    pub(super) fn room_list(
        &mut self,
        fx: &mut Effects,
        user: &BareJid,
        server: String,
        within: Option<RoomRef>,
        rooms: Result<Vec<ListedRoom>, BridgeError>,
    ) {
        let key = (user.clone(), server.to_ascii_lowercase(), within);
        let rooms = match rooms {
            Ok(rooms) => rooms,
            Err(err) => return fx.stanzas.extend(self.list_failed(key, &err)),
        };
        for pending in self.lists.waiting.remove(&key).unwrap_or_default() {
            fx.stanzas
                .push(answer_list(&self.addressing, &server, &rooms, &pending));
        }
        self.lists.fetched.insert(key, (Instant::now(), rooms));
    }

    /// The network could not list: every request waiting gets an error (a room's rooms:
    /// no such room holding rooms, as far as the user may see).
    pub(super) fn list_failed(&mut self, key: ListKey, err: &BridgeError) -> Vec<Stanza> {
        let from = list_jid(&self.addressing, &key.1);
        let (condition, text) = match (&key.2, err) {
            (Some(_), BridgeError::NotFound(_) | BridgeError::Invalid(_)) => {
                (DefinedCondition::ItemNotFound, err.to_string())
            }
            (Some(_), _) => (DefinedCondition::RemoteServerNotFound, err.to_string()),
            (None, _) => (
                DefinedCondition::RemoteServerNotFound,
                format!("{err}: join a channel on this server first"),
            ),
        };
        self.lists
            .waiting
            .remove(&key)
            .unwrap_or_default()
            .into_iter()
            .map(|p| {
                let error = error(ErrorType::Cancel, condition.clone(), text.clone());
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

/// How a list shows a room: its name, member count and topic.
fn label(room: &ListedRoom) -> String {
    let ListedRoom {
        name,
        members,
        about,
        ..
    } = room;
    match about.is_empty() {
        true => format!("{name} ({members})"),
        false => format!("{name} ({members}) – {about}"),
    }
}

/// One page of `rooms` for `pending`, as a disco#items result from the server JID. A room
/// holding rooms is an item of that JID at its node; the others are their own JIDs. Each is
/// paged by its room's JID.
fn answer_list(
    addressing: &IrcAddressing,
    server: &str,
    rooms: &[ListedRoom],
    pending: &PendingList,
) -> Stanza {
    use tokio_xmpp::parsers::disco::{DiscoItemsResult, Item};
    use tokio_xmpp::parsers::rsm::{First, SetResult};
    let from = list_jid(addressing, server);
    let mut sorted: Vec<&ListedRoom> = rooms.iter().collect();
    sorted.sort_by_key(|room| room.name.to_lowercase());
    let ids: Vec<Option<BareJid>> = sorted
        .iter()
        .map(|room| addressing.channel_jid(server, &room.name).ok())
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
    let (cursors, items): (Vec<String>, Vec<Item>) = (start..end)
        .filter_map(|i| {
            let room = sorted[i];
            let id = ids[i].clone()?;
            let (jid, node) = match room.holds_rooms {
                true => (from.clone()?, Some(format!("{SPACE_NODE}{}", room.name))),
                false => (id.clone().into(), None),
            };
            let item = Item {
                jid,
                node,
                name: Some(label(room)),
            };
            Some((id.to_string(), item))
        })
        .unzip();
    let rsm = pending.rsm.as_ref().map(|_| SetResult {
        first: cursors.first().map(|id| First {
            index: Some(start),
            item: id.clone(),
        }),
        last: cursors.last().cloned(),
        count: Some(sorted.len()),
    });
    let result = DiscoItemsResult {
        node: pending.node.clone(),
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
