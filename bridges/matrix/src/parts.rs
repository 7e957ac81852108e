//! One set of the bridge's parts over one way of reaching Matrix: the application service's
//! (its puppets, on its homeserver) or one personal login's (the user's own account, on
//! theirs). Both map Matrix and XMPP through the same parts; only the [`Client`] and the
//! [`Puppets`] differ.

use std::sync::{Arc, Mutex};

use causeway_bridge::{Event, UserRef};
use tokio::sync::mpsc;

use crate::client::Client;
use crate::directory::Directory;
use crate::incoming::Incoming;
use crate::links::MessageLinks;
use crate::media::Shelf;
use crate::membership::Memberships;
use crate::outgoing::Outgoing;
use crate::pictures::Pictures;
use crate::puppets::Puppets;
use crate::room_state::RoomState;
use crate::rooms::Rooms;
use crate::store::MatrixStore;
use crate::workers::{JoinsInProgress, Performer, Workers};
use crate::NickRule;

/// The parts that act for the users and take in what Matrix reports.
#[derive(Debug)]
pub(crate) struct Parts {
    /// Each user's actions, in order.
    pub workers: Workers,
    /// What the homeserver reports, turned into events.
    pub incoming: Arc<Incoming>,
    /// Joins not done yet, which incoming events wait for.
    pub joins: Arc<JoinsInProgress>,
}

/// What the parts are built from.
pub(crate) struct Reach {
    /// How calls reach the homeserver.
    pub client: Client,
    /// Who acts for whom.
    pub puppets: Arc<Puppets>,
    /// The server name room aliases and lists default to.
    pub server_name: String,
    /// How many members a big room shows at join.
    pub member_limit: usize,
    /// What the gateway accepts as a nick.
    pub nicks: NickRule,
    /// The links to the files received; the limits of those sent.
    pub shelf: Arc<Shelf>,
    /// The XMPP user of a personal login; `None` for the appservice.
    pub owner: Option<UserRef>,
}

impl Parts {
    /// The parts for `reach`, keeping their state in `store`, reporting on `emit`.
    pub(crate) fn new(
        reach: Reach,
        store: Arc<dyn MatrixStore>,
        emit: mpsc::Sender<Event>,
    ) -> Parts {
        let Reach {
            client,
            puppets,
            server_name,
            member_limit,
            nicks,
            shelf,
            owner,
        } = reach;
        let rooms = Arc::new(Mutex::new(Rooms::new(member_limit, nicks)));
        let links = Arc::new(MessageLinks::new(store.clone()));
        let directory = Arc::new(Directory::new(
            client.clone(),
            store,
            puppets.clone(),
            server_name,
        ));
        let room_state = Arc::new(RoomState::new(
            client.clone(),
            puppets.clone(),
            rooms.clone(),
        ));
        let joins = Arc::new(JoinsInProgress::new());
        let pictures = Arc::new(Pictures::new(client.clone(), rooms.clone(), emit.clone()));
        let performer = Performer {
            membership: Arc::new(Memberships::new(
                client.clone(),
                puppets.clone(),
                directory.clone(),
                room_state.clone(),
                rooms.clone(),
                shelf.clone(),
            )),
            room_state,
            outgoing: Arc::new(Outgoing {
                client: client.clone(),
                puppets: puppets.clone(),
                links: links.clone(),
                directory: directory.clone(),
                rooms: rooms.clone(),
                typing: Default::default(),
                shelf: shelf.clone(),
            }),
            directory: directory.clone(),
            joins: joins.clone(),
            emit: emit.clone(),
            pictures: pictures.clone(),
        };
        let incoming = Incoming {
            client,
            puppets,
            links,
            directory,
            rooms,
            emit,
            seen: Default::default(),
            typists: Default::default(),
            shelf,
            owner,
            pictures,
        };
        Parts {
            workers: Workers::new(performer),
            incoming: Arc::new(incoming),
            joins,
        }
    }
}
