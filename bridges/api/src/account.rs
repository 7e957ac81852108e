//! A user's own account on a network (Matrix personal logins): logging in and out, what
//! the session is doing, and making it trusted by the user's other sessions.
//!
//! The core offers these through XEP-0077 registration and ad-hoc commands on the network's
//! component; a network without accounts of its own ([`crate::Network::has_accounts`])
//! refuses them all.

use std::fmt;

/// What a user asks of their own account.
#[derive(Clone, PartialEq, Eq)]
pub enum AccountRequest {
    /// Sign in, replacing any session the user had.
    LogIn(Credentials),
    /// Sign in through the server's own web page (OAuth 2.0, for servers that take no
    /// password): the reply is the link to open ([`AccountReply::OpenInBrowser`]). A
    /// session the user had is replaced.
    StartBrowserLogin {
        /// The account (`@alice:example.org`); may be empty with `server`.
        account: String,
        /// The server's address, for servers the account's name does not lead to.
        server: Option<String>,
    },
    /// Finish the browser sign-in with the address the browser ended up on (or its query),
    /// which carries the authorization code.
    FinishBrowserLogin {
        /// That address.
        redirect: Secret,
    },
    /// Sign out and forget the session and its keys.
    LogOut,
    /// How the session is doing.
    Status,
    /// Have the user's other sessions trust this one, with their recovery key or passphrase
    /// (which also opens the key backup).
    Verify {
        /// The recovery key or passphrase.
        recovery: Secret,
    },
    /// Ask the user's other sessions to verify this one by comparing emoji; a comparison
    /// under way is called off.
    RequestComparison,
    /// The emoji to compare, once one of the user's other sessions took the request
    /// ([`AccountReply::NotYet`] while none has).
    Compare,
    /// The user compared the emoji: whether this session and the other show the same.
    Confirm {
        /// They show the same.
        matching: bool,
    },
}

impl fmt::Debug for AccountRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccountRequest::LogIn(credentials) => {
                f.debug_tuple("LogIn").field(credentials).finish()
            }
            AccountRequest::StartBrowserLogin { account, server } => f
                .debug_struct("StartBrowserLogin")
                .field("account", account)
                .field("server", server)
                .finish(),
            AccountRequest::FinishBrowserLogin { .. } => f.write_str("FinishBrowserLogin { .. }"),
            AccountRequest::LogOut => f.write_str("LogOut"),
            AccountRequest::Status => f.write_str("Status"),
            AccountRequest::Verify { .. } => f.write_str("Verify { .. }"),
            AccountRequest::RequestComparison => f.write_str("RequestComparison"),
            AccountRequest::Compare => f.write_str("Compare"),
            AccountRequest::Confirm { matching } => f
                .debug_struct("Confirm")
                .field("matching", matching)
                .finish(),
        }
    }
}

/// Who the user is on the network and how they prove it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The account (`@alice:example.org`); may be empty with a token, which names it.
    pub account: String,
    /// The server's address (`https://matrix.example.org`), for servers the account's name
    /// does not lead to; `None` finds it from the account.
    pub server: Option<String>,
    /// The password or token.
    pub secret: Secret,
}

/// A password, token or recovery key: never shown in logs.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// A password (or passphrase).
    Password(String),
    /// An access token from another client.
    Token(String),
}

impl Secret {
    /// The secret's text.
    pub fn expose(&self) -> &str {
        match self {
            Secret::Password(text) | Secret::Token(text) => text,
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Password(_) => f.write_str("Password(<hidden>)"),
            Secret::Token(_) => f.write_str("Token(<hidden>)"),
        }
    }
}

/// The network's answer to an [`AccountRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountReply {
    /// Signed in.
    LoggedIn(AccountStatus),
    /// Open this link, sign in there, then give back the address the browser ends up on.
    OpenInBrowser {
        /// The server's sign-in page for this gateway.
        url: String,
    },
    /// Signed out (or there was no session).
    LoggedOut,
    /// The session, or `None` when the user is not logged in.
    Status(Option<AccountStatus>),
    /// The session is now trusted by the user's other sessions.
    Verified(AccountStatus),
    /// A verification request went to the user's other sessions.
    Requested,
    /// What this session shows to compare with the other session: seven emoji.
    Emoji(Vec<Emoji>),
    /// No other session has taken the request yet.
    NotYet,
}

/// One emoji of a verification's short authentication string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emoji {
    /// The emoji itself (`🐶`).
    pub symbol: String,
    /// Its name as the other session shows it (`Dog`).
    pub name: String,
}

/// A logged-in session as the user is shown it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountStatus {
    /// The account (`@alice:example.org`).
    pub account: String,
    /// The server the session talks to.
    pub server: String,
    /// The session's device id.
    pub device: String,
    /// Whether the user's other sessions trust this one (cross-signed); `None` when the
    /// network cannot tell yet.
    pub verified: Option<bool>,
    /// What the session is doing (`connected`, `retrying: …`).
    pub connection: String,
}

impl fmt::Display for AccountStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verified = match self.verified {
            Some(true) => "verified",
            Some(false) => "not verified",
            None => "verification unknown",
        };
        write!(
            f,
            "{} on {}, device {} ({verified}), {}",
            self.account, self.server, self.device, self.connection
        )
    }
}
