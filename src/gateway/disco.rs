//! XEP-0030 service discovery, XEP-0092 software version and XEP-0199 ping for the gateway's
//! own domain.

use causeway_bridge::NetworkKind;
use tokio_xmpp::parsers::disco::{DiscoInfoResult, DiscoItemsResult, Identity};
use tokio_xmpp::parsers::ns;
use tokio_xmpp::parsers::version::VersionResult;

/// XEP-0393: bodies are styled text both ways (IRC's codes, Matrix's HTML).
pub const STYLING: &str = "urn:xmpp:styling:0";

/// The features the gateway domain really implements, sorted.
pub const GATEWAY_FEATURES: &[&str] = &[ns::DISCO_INFO, ns::DISCO_ITEMS, ns::VERSION, ns::PING];

/// disco#info of a network's gateway domain.
/// With `rooms`, the domain also serves the network's rooms as MUCs; with `accounts`, users
/// register (log in to their own accounts) on it.
pub fn gateway_info(network: NetworkKind, rooms: bool, accounts: bool) -> DiscoInfoResult {
    let mut identities = vec![Identity::new(
        "gateway",
        network.as_str(),
        "en",
        gateway_name(network),
    )];
    if network == NetworkKind::Irc {
        // biboumi announces this too: clients list the domain among their MUC services.
        identities.push(Identity::new(
            "conference",
            "irc",
            "en",
            gateway_name(network),
        ));
    }
    DiscoInfoResult {
        node: None,
        identities,
        features: GATEWAY_FEATURES
            .iter()
            .chain(rooms.then_some(&ns::MUC))
            .chain(rooms.then_some(&super::adhoc::COMMANDS))
            .chain(accounts.then_some(&ns::REGISTER))
            .map(|f| f.to_string())
            .collect(),
        extensions: vec![],
    }
}

/// disco#items of the gateway domain: nothing listed yet.
pub fn gateway_items() -> DiscoItemsResult {
    DiscoItemsResult {
        node: None,
        items: vec![],
        rsm: None,
    }
}

/// disco#info at the node of a room holding rooms (a Matrix space), named as its list
/// shows it: a directory of chatrooms whose items are its rooms. Gajim's service browser
/// knows no such identity, so it browses the node with its full browser (Join for the
/// rooms, Browse for the spaces among them) rather than the bare one `hierarchy/branch`
/// gets.
pub fn space_info(node: &str, name: String) -> DiscoInfoResult {
    DiscoInfoResult {
        node: Some(node.to_owned()),
        identities: vec![Identity::new("directory", "chatroom", "en", name)],
        features: [ns::DISCO_INFO, ns::DISCO_ITEMS]
            .iter()
            .map(|f| f.to_string())
            .collect(),
        extensions: vec![],
    }
}

/// XEP-0092: name and version only; the OS is nobody's business.
pub fn version() -> VersionResult {
    VersionResult {
        name: "causeway".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        os: None,
    }
}

fn gateway_name(network: NetworkKind) -> &'static str {
    match network {
        NetworkKind::Irc => "causeway IRC gateway",
        NetworkKind::Matrix => "causeway Matrix gateway",
    }
}

/// disco#info of a room: a public, persistent-looking IRC channel with an archive; with
/// `rich`, a Matrix room that also takes corrections, replies, retractions and reactions.
pub fn room_info(
    name: &str,
    occupants: Option<(usize, Option<&str>)>,
    rich: bool,
) -> tokio_xmpp::minidom::Element {
    use tokio_xmpp::minidom::Element;
    let nc = super::stanzas::nc;
    let mut query = Element::builder("query", ns::DISCO_INFO).append(
        Element::builder("identity", ns::DISCO_INFO)
            .attr(nc("category"), "conference")
            .attr(nc("type"), if rich { "matrix" } else { "irc" })
            .attr(nc("name"), name)
            .build(),
    );
    for feature in [
        ns::MUC,
        super::mam::MAM,
        super::mam::SID,
        super::occupant_id::NS,
        super::muc::CHAT_STATES,
        STYLING,
        "muc_public",
        "muc_open",
        "muc_semianonymous",
        "muc_unsecured",
    ]
    .into_iter()
    .chain(rich.then_some(super::rich::FEATURES).into_iter().flatten())
    .chain(rich.then_some(super::muc::CHAT_MARKERS))
    .chain(rich.then_some(super::muc::VCARD))
    {
        query = query.append(
            Element::builder("feature", ns::DISCO_INFO)
                .attr(nc("var"), feature)
                .build(),
        );
    }
    if let Some((count, avatar)) = occupants {
        let x = "jabber:x:data";
        let field = |var: &'static str, value: String| {
            Element::builder("field", x)
                .attr(nc("var"), var)
                .append(Element::builder("value", x).append(value).build())
                .build()
        };
        query = query.append(
            Element::builder("x", x)
                .attr(nc("type"), "result")
                .append(field(
                    "FORM_TYPE",
                    "http://jabber.org/protocol/muc#roominfo".into(),
                ))
                .append(field("muc#roominfo_occupants", count.to_string()))
                .append_all(avatar.map(|hash| field("muc#roominfo_avatarhash", hash.into())))
                .build(),
        );
    }
    query.build()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// Every feature the domain (with rooms and accounts) or a room (IRC or Matrix)
    /// advertises, leaving out XEP-0045's room-type markers (`muc_public`…).
    fn advertised() -> BTreeSet<String> {
        let mut all: BTreeSet<String> = gateway_info(NetworkKind::Matrix, true, true)
            .features
            .into_iter()
            .collect();
        for rich in [false, true] {
            let room = room_info("#r", None, rich);
            all.extend(
                room.children()
                    .filter(|c| c.is("feature", ns::DISCO_INFO))
                    .filter_map(|c| c.attr("var"))
                    .map(str::to_owned),
            );
        }
        all.retain(|f| !f.starts_with("muc_"));
        all
    }

    /// The namespaces in the README's XEP table's last column.
    fn in_readme() -> BTreeSet<String> {
        let readme = include_str!("../../README.md");
        let table = readme
            .split("\n## XEPs\n")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .expect("README.md has a ## XEPs section");
        table
            .lines()
            .filter(|l| l.starts_with("| 0"))
            .filter_map(|l| l.trim_end_matches('|').rsplit('|').next())
            .flat_map(|column| column.split('`').skip(1).step_by(2).map(str::to_owned))
            .collect()
    }

    #[test]
    fn the_readme_xep_table_lists_what_disco_advertises() {
        assert_eq!(in_readme(), advertised());
    }
}
