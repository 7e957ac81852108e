//! Users' own accounts on the fake network ([`super::FakeNetwork::with_accounts`]), as
//! Matrix personal logins have them: one session per user, answering as a homeserver would.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::{AccountReply, AccountRequest, AccountStatus, BridgeError, Emoji, Secret, UserRef};

/// The one password (or token, or recovery key) the fake network's accounts accept.
pub const RIGHT_SECRET: &str = "right";
/// The server the fake network's accounts cannot reach.
pub const UNREACHABLE_SERVER: &str = "https://unreachable.example";

/// The emoji the fake network's comparisons show.
pub const FAKE_EMOJI: [(&str, &str); 7] = [
    ("🐶", "Dog"),
    ("🐱", "Cat"),
    ("🦁", "Lion"),
    ("🐎", "Horse"),
    ("🦄", "Unicorn"),
    ("🐷", "Pig"),
    ("🐘", "Elephant"),
];

/// The one server of the fake network that logs in through the browser (only).
pub const BROWSER_SERVER: &str = "https://oauth.example";

/// Each logged-in user's session, and the account of each browser login under way.
#[derive(Debug, Default)]
pub(super) struct Accounts(
    Mutex<BTreeMap<UserRef, Session>>,
    Mutex<BTreeMap<UserRef, String>>,
);

#[derive(Debug)]
struct Session {
    status: AccountStatus,
    comparison: Comparison,
}

/// How far an emoji comparison went: the other session takes the request at the first
/// [`AccountRequest::Compare`] (answered [`AccountReply::NotYet`]), and shows the emoji
/// at the next.
#[derive(Debug, PartialEq)]
enum Comparison {
    None,
    Requested,
    Taken,
    Shown,
}

impl Accounts {
    /// The answer to `user`'s request: any Matrix ID logs in with [`RIGHT_SECRET`] (a token
    /// without an account names `@owner-of-the-token:example.org`), anything else is refused
    /// like a homeserver refuses it; an account that is no Matrix ID is invalid, and
    /// [`UNREACHABLE_SERVER`] cannot be reached. Browser logins are [`BROWSER_SERVER`]'s,
    /// finished by an address with `code=right` in it.
    pub(super) fn answer(
        &self,
        user: &UserRef,
        request: AccountRequest,
    ) -> Result<AccountReply, BridgeError> {
        let mut accounts = self.0.lock().expect("fake network accounts poisoned");
        match request {
            AccountRequest::LogIn(credentials) => {
                let account = match (credentials.account.as_str(), &credentials.secret) {
                    ("", Secret::Token(_)) => "@owner-of-the-token:example.org".to_owned(),
                    (account, _) => account.to_owned(),
                };
                let Some((_, domain)) =
                    account.split_once(':').filter(|_| account.starts_with('@'))
                else {
                    return Err(BridgeError::Invalid(format!(
                        "{account:?} is not a Matrix ID"
                    )));
                };
                let server = credentials
                    .server
                    .unwrap_or_else(|| format!("https://{domain}"));
                if server == UNREACHABLE_SERVER {
                    return Err(BridgeError::Unreachable(format!(
                        "{server}: connection refused"
                    )));
                }
                if credentials.secret.expose() != RIGHT_SECRET {
                    return Err(BridgeError::Refused(
                        "M_FORBIDDEN: Invalid username or password".into(),
                    ));
                }
                let status = AccountStatus {
                    account,
                    server,
                    device: "FAKEDEVICE".into(),
                    verified: Some(false),
                    connection: "connected".into(),
                };
                accounts.insert(user.clone(), Session::new(status.clone()));
                Ok(AccountReply::LoggedIn(status))
            }
            AccountRequest::StartBrowserLogin { account, server } => {
                let server = match (server, account.split_once(':')) {
                    (Some(server), _) => server,
                    (None, Some((_, domain))) => format!("https://{domain}"),
                    (None, None) => {
                        return Err(BridgeError::Invalid(format!(
                            "{account:?} is not a Matrix ID"
                        )))
                    }
                };
                if server != BROWSER_SERVER {
                    return Err(BridgeError::Invalid(format!(
                        "{server} takes passwords, not browser logins: give your password"
                    )));
                }
                accounts.remove(user);
                let mut browser = self.1.lock().expect("fake network logins poisoned");
                browser.insert(user.clone(), account);
                let url = format!("{BROWSER_SERVER}/authorize?state=fake");
                Ok(AccountReply::OpenInBrowser { url })
            }
            AccountRequest::FinishBrowserLogin { redirect } => {
                let mut browser = self.1.lock().expect("fake network logins poisoned");
                let Some(account) = browser.remove(user) else {
                    return Err(BridgeError::Invalid("no browser login was started".into()));
                };
                if !redirect.expose().contains("code=right") {
                    return Err(BridgeError::Refused(
                        "the browser login did not finish: access_denied".into(),
                    ));
                }
                let status = AccountStatus {
                    account,
                    server: BROWSER_SERVER.into(),
                    device: "FAKEDEVICE".into(),
                    verified: Some(false),
                    connection: "connected".into(),
                };
                accounts.insert(user.clone(), Session::new(status.clone()));
                Ok(AccountReply::LoggedIn(status))
            }
            AccountRequest::LogOut => {
                accounts.remove(user);
                Ok(AccountReply::LoggedOut)
            }
            AccountRequest::Status => Ok(AccountReply::Status(
                accounts.get(user).map(|session| session.status.clone()),
            )),
            request => {
                let session = accounts
                    .get_mut(user)
                    .ok_or_else(|| BridgeError::Invalid("not logged in".into()))?;
                session.verify(request)
            }
        }
    }
}

impl Session {
    fn new(status: AccountStatus) -> Session {
        Session {
            status,
            comparison: Comparison::None,
        }
    }

    /// The answer to a verification request.
    fn verify(&mut self, request: AccountRequest) -> Result<AccountReply, BridgeError> {
        match request {
            AccountRequest::Verify { recovery } if recovery.expose() == RIGHT_SECRET => {
                self.status.verified = Some(true);
                Ok(AccountReply::Verified(self.status.clone()))
            }
            AccountRequest::Verify { .. } => {
                Err(BridgeError::Refused("the recovery key is wrong".into()))
            }
            AccountRequest::RequestComparison => {
                self.comparison = Comparison::Requested;
                Ok(AccountReply::Requested)
            }
            AccountRequest::Compare => match self.comparison {
                Comparison::None => Err(BridgeError::Invalid("no verification requested".into())),
                Comparison::Requested => {
                    self.comparison = Comparison::Taken;
                    Ok(AccountReply::NotYet)
                }
                Comparison::Taken | Comparison::Shown => {
                    self.comparison = Comparison::Shown;
                    let emoji = FAKE_EMOJI.iter().map(|(symbol, name)| Emoji {
                        symbol: (*symbol).into(),
                        name: (*name).into(),
                    });
                    Ok(AccountReply::Emoji(emoji.collect()))
                }
            },
            AccountRequest::Confirm { matching } => {
                if std::mem::replace(&mut self.comparison, Comparison::None) != Comparison::Shown {
                    return Err(BridgeError::Invalid("no emoji were shown".into()));
                }
                if !matching {
                    return Err(BridgeError::Refused("the emoji did not match".into()));
                }
                self.status.verified = Some(true);
                Ok(AccountReply::Verified(self.status.clone()))
            }
            other => unreachable!("{other:?} is no verification request"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeNetwork;
    use crate::{Credentials, Network};

    #[tokio::test]
    async fn accounts_log_in_with_the_right_password_only() {
        let alice = UserRef("alice@example.org".into());
        assert!(!FakeNetwork::default().has_accounts());
        let net = FakeNetwork::with_accounts();
        assert!(net.has_accounts());
        let log_in = |password: &str| {
            AccountRequest::LogIn(Credentials {
                account: "@alice:example.org".into(),
                server: None,
                secret: Secret::Password(password.into()),
            })
        };
        let refused = net.account(&alice, log_in("wrong")).await.unwrap_err();
        assert_eq!(
            refused,
            BridgeError::Refused("M_FORBIDDEN: Invalid username or password".into())
        );
        let Ok(AccountReply::LoggedIn(status)) = net.account(&alice, log_in(RIGHT_SECRET)).await
        else {
            panic!("the right password logs in");
        };
        assert_eq!(status.server, "https://example.org");
        assert_eq!(
            net.account(&alice, AccountRequest::Status).await.unwrap(),
            AccountReply::Status(Some(status))
        );
        net.account(&alice, AccountRequest::LogOut).await.unwrap();
        assert_eq!(
            net.account(&alice, AccountRequest::Status).await.unwrap(),
            AccountReply::Status(None)
        );
    }
}
