//! The puppets: the Matrix users `@<prefix><escaped bare JID>:<server_name>` that stand for
//! XMPP users, registered on the homeserver on first use, and the rule saying whose puppet
//! a Matrix user id is (only users the gateway serves, in the one canonical spelling).
//!
//! A personal login has one "puppet": the user's own account, which needs no registering.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use causeway_bridge::UserRef;
use ruma::api::client::account::register;
use ruma::api::client::profile;
use ruma::OwnedUserId;
use tracing::{info, warn};

use crate::client::{CallError, Client, Retry};
use crate::{ids, Access};

/// The puppets of the XMPP users, and who may have one.
#[derive(Debug)]
pub(crate) struct Puppets {
    client: Client,
    mode: Mode,
}

#[derive(Debug)]
enum Mode {
    /// The appservice's puppets, one per XMPP user.
    Appservice {
        /// The homeserver's server name (the part after `:` in user ids).
        server_name: String,
        /// Localpart prefix of the puppets.
        user_prefix: String,
        /// Who may be reached: a puppet of anyone else is nobody's.
        allowed: Arc<Access>,
        /// Puppets known to exist on the homeserver.
        registered: Mutex<HashSet<String>>,
    },
    /// One XMPP user's own Matrix account.
    Personal {
        /// The XMPP user.
        user: UserRef,
        /// Their Matrix account.
        account: OwnedUserId,
    },
}

impl Puppets {
    /// The puppets `@<user_prefix>…:<server_name>` of the users `allowed` accepts (the
    /// network's rule, which a reload replaces).
    pub(crate) fn new(
        client: Client,
        server_name: String,
        user_prefix: String,
        allowed: Arc<Access>,
    ) -> Puppets {
        Puppets {
            client,
            mode: Mode::Appservice {
                server_name,
                user_prefix,
                allowed,
                registered: Mutex::default(),
            },
        }
    }

    /// `user`'s own `account`, logged in through `client`.
    pub(crate) fn personal(client: Client, user: UserRef, account: OwnedUserId) -> Puppets {
        Puppets {
            client,
            mode: Mode::Personal { user, account },
        }
    }

    /// A personal login's own account.
    pub(crate) fn own_account(&self) -> Option<OwnedUserId> {
        match &self.mode {
            Mode::Personal { account, .. } => Some(account.clone()),
            Mode::Appservice { .. } => None,
        }
    }

    /// The user's puppet id, unless the JID is too long for one.
    pub(crate) fn try_id(&self, user: &UserRef) -> Option<OwnedUserId> {
        match &self.mode {
            Mode::Appservice {
                server_name,
                user_prefix,
                ..
            } => {
                let local = ids::puppet_localpart(user_prefix, user);
                OwnedUserId::try_from(format!("@{local}:{server_name}")).ok()
            }
            Mode::Personal { user: own, account } => (own == user).then(|| account.clone()),
        }
    }

    /// The user's puppet id; every user reaching the workers has one (`Network::act`
    /// refuses the others).
    pub(crate) fn id(&self, user: &UserRef) -> OwnedUserId {
        self.try_id(user)
            .expect("act() refuses users without a puppet id")
    }

    /// The XMPP user a Matrix user id stands for: one of our puppets (in its one canonical
    /// spelling) of a user the gateway serves, or the personal login's own account.
    /// Invitations, direct chats and the homeserver's questions about anyone else reach
    /// nobody.
    pub(crate) fn owner(&self, user_id: &str) -> Option<UserRef> {
        let (server_name, user_prefix, allowed) = match &self.mode {
            Mode::Appservice {
                server_name,
                user_prefix,
                allowed,
                ..
            } => (server_name, user_prefix, allowed),
            Mode::Personal { user, account } => {
                return (account.as_str() == user_id).then(|| user.clone());
            }
        };
        let (local, server) = ids::split_user_id(user_id)?;
        if server != server_name {
            return None;
        }
        let owner = ids::puppet_owner(user_prefix, local)?;
        let canonical = ids::puppet_localpart(user_prefix, &owner) == local;
        let allowed = allowed.allows(&owner);
        (canonical && owner.0.contains('@') && allowed).then_some(owner)
    }

    /// Whether the user's puppet is known to exist (the user's own account always is).
    pub(crate) fn is_registered(&self, user: &UserRef) -> bool {
        match &self.mode {
            Mode::Appservice { registered, .. } => registered
                .lock()
                .expect("registered lock")
                .contains(self.id(user).as_str()),
            _ => true,
        }
    }

    /// Make sure the puppet exists, with `nick` as display name when it is new.
    pub(crate) async fn ensure(
        &self,
        user: &UserRef,
        nick: &str,
    ) -> Result<OwnedUserId, CallError> {
        let id = self.id(user);
        let Mode::Appservice { registered, .. } = &self.mode else {
            // The user's own account exists, and keeps the name they gave it.
            return Ok(id);
        };
        if registered
            .lock()
            .expect("registered lock")
            .contains(id.as_str())
        {
            return Ok(id);
        }
        let mut request = register::v3::Request::new();
        request.username = Some(id.localpart().to_owned());
        request.login_type = Some(register::LoginType::ApplicationService);
        request.inhibit_login = true;
        match self.client.call(request, None, Retry::Once).await {
            Ok(_) => {
                info!(puppet = %id, "puppet registered");
                let name = profile::set_profile_field::v3::Request::new(
                    id.clone(),
                    ruma::profile::ProfileFieldValue::DisplayName(nick.to_owned()),
                );
                if let Err(e) = self.client.call(name, Some(&id), Retry::Once).await {
                    warn!(puppet = %id, error = %e, "cannot set the puppet's display name");
                }
            }
            Err(e) if e.errcode() == Some("M_USER_IN_USE") => {}
            Err(e) => return Err(e),
        }
        registered
            .lock()
            .expect("registered lock")
            .insert(id.to_string());
        Ok(id)
    }
}
