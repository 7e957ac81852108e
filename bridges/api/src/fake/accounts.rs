//! Users' own accounts on the fake network ([`super::FakeNetwork::with_accounts`]), as
//! Matrix personal logins have them: one session per user, answering as a homeserver would.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::{AccountReply, AccountRequest, AccountStatus, BridgeError, Secret, UserRef};

/// The one password (or token, or recovery key) the fake network's accounts accept.
pub const RIGHT_SECRET: &str = "right";
/// The server the fake network's accounts cannot reach.
pub const UNREACHABLE_SERVER: &str = "https://unreachable.example";

/// Each logged-in user's session.
#[derive(Debug, Default)]
pub(super) struct Accounts(Mutex<BTreeMap<UserRef, AccountStatus>>);

impl Accounts {
    /// The answer to `user`'s request: any Matrix ID logs in with [`RIGHT_SECRET`] (a token
    /// without an account names `@owner-of-the-token:example.org`), anything else is refused
    /// like a homeserver refuses it; an account that is no Matrix ID is invalid, and
    /// [`UNREACHABLE_SERVER`] cannot be reached.
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
                accounts.insert(user.clone(), status.clone());
                Ok(AccountReply::LoggedIn(status))
            }
            AccountRequest::LogOut => {
                accounts.remove(user);
                Ok(AccountReply::LoggedOut)
            }
            AccountRequest::Status => Ok(AccountReply::Status(accounts.get(user).cloned())),
            AccountRequest::Verify { recovery } => {
                let status = accounts
                    .get_mut(user)
                    .ok_or_else(|| BridgeError::Invalid("not logged in".into()))?;
                if recovery.expose() != RIGHT_SECRET {
                    return Err(BridgeError::Refused("the recovery key is wrong".into()));
                }
                status.verified = Some(true);
                Ok(AccountReply::Verified(status.clone()))
            }
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
