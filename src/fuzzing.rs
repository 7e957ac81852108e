//! Entry points for the fuzz targets (`fuzz/`, see `fuzz/run.sh`) and for the tests that
//! run their corpora and every input a fuzzer found a fault with (`tests/fuzz_corpus.rs`).
//! Each takes arbitrary bytes, as a peer of the gateway could send them, and panics only
//! where the gateway breaks a rule of its own.

use std::sync::OnceLock;

use causeway_bridge::NetworkKind;
use tokio_xmpp::jid::{BareJid, Jid};

use crate::address::{escape, unescape, IrcAddress, IrcAddressing};
use crate::gateway::access::AccessList;
use crate::gateway::muc::Muc;
use crate::gateway::{adhoc, Gateway};
use crate::store::Store;

/// The XEP-0114 codec: the byte stream cut into elements, each parsed; see
/// [`crate::component::fuzzing::stream`].
pub fn component_stream(data: &[u8]) {
    crate::component::fuzzing::stream(data);
}

/// JIDs and remote names, three lines of input: a JID (or a server name), a channel, a nick.
/// Whatever JID a name is given reads back as an address whose JID is that JID again, in
/// every addressing mode; escaping a name and reading it back gives the name.
pub fn addresses(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.splitn(3, '\n');
    let (first, channel, nick) = (
        lines.next().unwrap_or_default(),
        lines.next().unwrap_or_default(),
        lines.next().unwrap_or_default(),
    );
    assert_eq!(unescape(&escape(text)), text, "escape then unescape");
    let modes = [
        IrcAddressing::new("irc.gw", None),
        IrcAddressing::new("irc.gw", Some("irc.example.net".into())),
        IrcAddressing::matrix("matrix.gw"),
    ];
    for addressing in &modes {
        if let Ok(jid) = first.parse::<Jid>() {
            let _ = addressing.parse(&jid);
        }
        if let Ok(jid) = addressing.channel_jid(first, channel) {
            let again = match addressing.parse(&jid.clone().into()) {
                Ok(IrcAddress::Channel {
                    server, channel, ..
                }) => addressing.channel_jid(&server, &channel),
                other => panic!("{jid} made for a channel reads as {other:?}"),
            };
            assert_eq!(again.as_ref(), Ok(&jid), "the channel's JID again");
            if let Ok(occupant) = addressing.occupant_jid(first, channel, nick) {
                assert!(matches!(
                    addressing.parse(&occupant.into()),
                    Ok(IrcAddress::Channel { nick: Some(_), .. })
                ));
            }
        }
        if let Ok(jid) = addressing.user_jid(first, nick) {
            let again = match addressing.parse(&jid.clone().into()) {
                Ok(IrcAddress::User { server, nick }) => addressing.user_jid(&server, &nick),
                other => panic!("{jid} made for a user reads as {other:?}"),
            };
            assert_eq!(again.as_ref(), Ok(&jid), "the user's JID again");
        }
    }
}

/// One stanza from a user of the gateway, as the core takes it, and the ad-hoc steps it
/// asks for run against a real SQLite database: command forms and MUC configuration forms
/// read and the settings saved.
pub fn adhoc_form(xml: &[u8]) {
    let Some(stanza) = crate::component::fuzzing::stanza(xml) else {
        return;
    };
    let domain: BareJid = "irc.gw".parse().expect("a domain");
    let muc = Muc::new(IrcAddressing::new("irc.gw", None), true, 20);
    let allowed = ["example.org".to_owned()];
    let admin: BareJid = "admin@example.org".parse().expect("a JID");
    let mut gateway = Gateway::new(
        NetworkKind::Irc,
        domain,
        AccessList::new(&allowed),
        Some(muc),
    )
    .with_admins(vec![admin]);
    let effects = gateway.handle_stanza(stanza);
    if effects.adhoc.is_empty() {
        return;
    }
    let (runtime, store) = adhoc_store();
    runtime.block_on(async {
        for request in &effects.adhoc {
            adhoc::run(store, None, None, request).await;
        }
    });
}

/// One runtime and one in-memory database for every input of a fuzzing run.
fn adhoc_store() -> &'static (tokio::runtime::Runtime, Store) {
    static STORE: OnceLock<(tokio::runtime::Runtime, Store)> = OnceLock::new();
    STORE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let store = runtime
            .block_on(Store::open("sqlite::memory:", 1))
            .expect("an in-memory database");
        (runtime, store)
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Every file of the target's seeds and regressions (inputs a fuzzer once failed on).
    fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
        let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        let mut inputs = Vec::new();
        for dir in ["seeds", "regressions"] {
            let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(target)) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                inputs.push((path.display().to_string(), std::fs::read(&path).unwrap()));
            }
        }
        inputs
    }

    fn run(target: &str, function: fn(&[u8])) {
        let inputs = inputs(target);
        assert!(!inputs.is_empty(), "{target} has seeds");
        for (name, data) in inputs {
            let result = std::panic::catch_unwind(|| function(&data));
            assert!(result.is_ok(), "{target} fails on {name}");
        }
    }

    #[test]
    fn component_stream() {
        run("component_stream", super::component_stream);
    }

    #[test]
    fn irc_line() {
        run("irc_line", causeway_irc::fuzzing::line);
    }

    #[test]
    fn addresses() {
        run("addresses", super::addresses);
    }

    #[test]
    fn matrix_transaction() {
        run("matrix_transaction", causeway_matrix::fuzzing::transaction);
    }

    #[test]
    fn adhoc_form() {
        // The seeds are stanzas the core takes as ad-hoc steps: the target reaches the forms.
        for (name, data) in inputs("adhoc_form") {
            let stanza = crate::component::fuzzing::stanza(&data);
            assert!(stanza.is_some(), "{name} is a stanza");
        }
        run("adhoc_form", super::adhoc_form);
    }
}
