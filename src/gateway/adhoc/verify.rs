//! The verify command's steps ("Verify this session", `matrix-verify`): with the recovery
//! key or passphrase in one step, or by comparing emoji with another of the user's sessions
//! in three — the request, the emoji, the user's answer — each form carrying its step in a
//! hidden `stage` field.

use std::collections::HashMap;

use tokio_xmpp::minidom::Element;

use causeway_bridge::{AccountReply, AccountRequest, BridgeError, Emoji, Secret};

use super::account::Answer;
use super::{field, get_text};

/// One step of the command for a requester whose form (if any) gave `submitted`; `ask`
/// puts a request to the network.
pub(super) async fn step<F>(
    answer: &Answer<'_>,
    submitted: Option<HashMap<String, Vec<String>>>,
    ask: impl Fn(AccountRequest) -> F,
) -> Element
where
    F: std::future::Future<Output = Result<AccountReply, BridgeError>>,
{
    let Some(given) = submitted else {
        return answer.form(verify_fields(), None);
    };
    let is_set = |var: &str| get_text(&given, var).is_some_and(|v| v == "1" || v == "true");
    match get_text(&given, "stage").as_deref() {
        Some(WAITING) => comparison(answer, ask(AccountRequest::Compare).await),
        Some(COMPARING) => {
            let matching = is_set("match");
            let reply = ask(AccountRequest::Confirm { matching }).await;
            answer.done(reply, "Verification failed", verified)
        }
        _ if is_set("emoji") => match ask(AccountRequest::RequestComparison).await {
            Ok(AccountReply::Requested) => answer.form(waiting_fields(), None),
            other => answer.done(other, "Verification failed", |_| None),
        },
        _ => {
            let recovery = given
                .get("recovery")
                .and_then(|r| r.first())
                .filter(|r| !r.trim().is_empty());
            let Some(recovery) = recovery else {
                let problem = "Give your recovery key or passphrase, or choose to \
                               compare emoji with another of your sessions.";
                return answer.form(verify_fields(), Some(("error", problem)));
            };
            let recovery = Secret::Password(recovery.clone());
            let reply = ask(AccountRequest::Verify { recovery }).await;
            answer.done(reply, "Verification failed", verified)
        }
    }
}

/// The emoji to compare, or the request still waiting for the user's other session.
fn comparison(answer: &Answer<'_>, reply: Result<AccountReply, BridgeError>) -> Element {
    match reply {
        Ok(AccountReply::Emoji(emoji)) => answer.form(comparing_fields(&emoji), None),
        Ok(AccountReply::NotYet) => answer.form(
            waiting_fields(),
            Some((
                "info",
                "None of your other sessions has accepted the request yet.",
            )),
        ),
        other => answer.done(other, "Verification failed", |_| None),
    }
}

/// The verify command's stages after the first, in its forms' hidden `stage` field: the
/// request went to the user's other sessions; the emoji are shown.
const WAITING: &str = "waiting";
const COMPARING: &str = "comparing";

/// The verify command's first form: the recovery key, or emoji to compare.
fn verify_fields() -> Vec<Element> {
    vec![
        field(
            "recovery",
            "text-private",
            "Recovery key or passphrase",
            &[],
        ),
        field(
            "emoji",
            "boolean",
            "Or compare emoji with another of my sessions (Element…)",
            &["0".into()],
        ),
    ]
}

/// While the user's other session is to take the request.
fn waiting_fields() -> Vec<Element> {
    vec![
        field(
            "instructions",
            "fixed",
            "",
            &[
                "A verification request went to your other Matrix sessions. Accept it in \
               one of them (Element: the request that pops up), choose to compare emoji \
               there, then go on here."
                    .into(),
            ],
        ),
        field("stage", "hidden", "", &[WAITING.into()]),
    ]
}

/// The emoji to compare, and the user's answer.
fn comparing_fields(emoji: &[Emoji]) -> Vec<Element> {
    let shown: Vec<String> = emoji
        .iter()
        .map(|e| format!("{} {}", e.symbol, e.name))
        .collect();
    vec![
        field(
            "instructions",
            "fixed",
            "",
            &["Does your other session show these emoji, in this order?".into()],
        ),
        field("emoji", "fixed", "Emoji", &[shown.join(", ")]),
        field("match", "boolean", "They match", &["0".into()]),
        field("stage", "hidden", "", &[COMPARING.into()]),
    ]
}

/// What a verified session's reply shows.
fn verified(reply: AccountReply) -> Option<(String, Option<Element>)> {
    match reply {
        AccountReply::Verified(status) => {
            Some((format!("This session is verified: {status}."), None))
        }
        _ => None,
    }
}
