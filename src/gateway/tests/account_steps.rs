//! The account commands that take several steps on the fake network: verifying by
//! comparing emoji, and logging in through the browser.

use causeway_bridge::fake::{BROWSER_SERVER, FAKE_EMOJI, RIGHT_SECRET};
use tokio_xmpp::minidom::Element;

use super::super::adhoc::{COMMANDS, DATA};
use super::accounts::{fields, note, Core};

#[tokio::test]
async fn verifying_by_comparing_emoji_step_by_step() {
    let mut core = Core::new(true).await;
    core.command("matrix-login", &[("token", RIGHT_SECRET)])
        .await;
    let stage = |command: &Element| {
        let form = fields(command.get_child("x", DATA).expect("a form"));
        let stage = form
            .iter()
            .find(|(var, kind, _)| var == "stage" && kind == "hidden");
        stage.map(|(_, _, values)| values.join(","))
    };
    let neither = core.command("matrix-verify", &[("emoji", "0")]).await;
    assert_eq!(neither.attr("status"), Some("executing"));
    assert!(
        note(&neither).1.contains("compare emoji"),
        "{:?}",
        note(&neither)
    );

    let requested = core.command("matrix-verify", &[("emoji", "1")]).await;
    assert_eq!(requested.attr("status"), Some("executing"));
    assert_eq!(stage(&requested).as_deref(), Some("waiting"));
    assert!(requested.get_child("note", COMMANDS).is_none());
    // The other session has not taken the request yet: the same step again, saying so.
    let not_yet = core.command("matrix-verify", &[("stage", "waiting")]).await;
    assert_eq!(stage(&not_yet).as_deref(), Some("waiting"));
    assert_eq!(
        note(&not_yet),
        (
            "info".into(),
            "None of your other sessions has accepted the request yet.".into()
        )
    );
    let shown = core.command("matrix-verify", &[("stage", "waiting")]).await;
    assert_eq!(stage(&shown).as_deref(), Some("comparing"));
    let form = fields(shown.get_child("x", DATA).unwrap());
    let emoji = form.iter().find(|(var, _, _)| var == "emoji").unwrap();
    let expected: Vec<String> = FAKE_EMOJI.iter().map(|(s, n)| format!("{s} {n}")).collect();
    assert_eq!(emoji.2, [expected.join(", ")]);
    assert!(form
        .iter()
        .any(|(var, kind, _)| var == "match" && kind == "boolean"));

    // A mismatch calls it off; nothing is left to confirm.
    let mismatch = [("stage", "comparing"), ("match", "0")];
    let no = core.command("matrix-verify", &mismatch).await;
    assert_eq!(
        note(&no),
        (
            "error".into(),
            "Verification failed: refused by the remote server: the emoji did not match.".into()
        )
    );
    let matching = [("stage", "comparing"), ("match", "1")];
    let late = core.command("matrix-verify", &matching).await;
    assert_eq!(note(&late).0, "error");

    core.command("matrix-verify", &[("emoji", "1")]).await;
    core.command("matrix-verify", &[("stage", "waiting")]).await;
    core.command("matrix-verify", &[("stage", "waiting")]).await;
    let yes = core.command("matrix-verify", &matching).await;
    let (kind, text) = note(&yes);
    assert_eq!(kind, "info");
    assert!(text.starts_with("This session is verified: ") && text.contains("(verified)"));
}

#[tokio::test]
async fn logging_in_through_the_browser() {
    let mut core = Core::new(true).await;
    let account = ("account", "@alice:oauth.example");
    let link = core.command("matrix-login", &[account]).await;
    assert_eq!(link.attr("status"), Some("executing"));
    assert!(link.get_child("note", COMMANDS).is_none());
    let form = fields(link.get_child("x", DATA).unwrap());
    let value = |form: &[(String, String, Vec<String>)], var: &str| {
        let field = form.iter().find(|(v, _, _)| v == var);
        field.map(|(_, kind, values)| (kind.clone(), values.join(",")))
    };
    let url = format!("{BROWSER_SERVER}/authorize?state=fake");
    assert_eq!(
        value(&form, "url"),
        Some(("text-single".into(), url.clone()))
    );
    assert_eq!(
        value(&form, "redirect"),
        Some(("text-private".into(), String::new()))
    );
    assert_eq!(
        value(&form, "stage"),
        Some(("hidden".into(), "browser".into()))
    );

    // Nothing pasted: asked again, the link still there.
    let empty = core
        .command("matrix-login", &[("stage", "browser"), ("url", &url)])
        .await;
    assert_eq!(empty.attr("status"), Some("executing"));
    assert_eq!(note(&empty).0, "error");
    let form = fields(empty.get_child("x", DATA).unwrap());
    assert_eq!(
        value(&form, "url"),
        Some(("text-single".into(), url.clone()))
    );

    // The browser came back with a refusal.
    let denied = "http://127.0.0.1/causeway-login?error=access_denied&state=fake";
    let denied = core
        .command(
            "matrix-login",
            &[("stage", "browser"), ("redirect", denied)],
        )
        .await;
    assert_eq!(
        note(&denied),
        (
            "error".into(),
            "Login failed: refused by the remote server: the browser login did not finish: \
             access_denied."
                .into()
        )
    );

    core.command("matrix-login", &[account]).await;
    let back = "http://127.0.0.1/causeway-login?code=right&state=fake";
    let done = core
        .command("matrix-login", &[("stage", "browser"), ("redirect", back)])
        .await;
    assert_eq!(
        note(&done),
        (
            "info".into(),
            "Logged in: @alice:oauth.example on https://oauth.example, device FAKEDEVICE (not \
             verified), connected."
                .into()
        )
    );
}
