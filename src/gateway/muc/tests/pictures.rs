//! XEP-0153 and XEP-0486: a member's picture is in their presences and their occupant's
//! vCard, through nick changes; the room's in a presence from the room (with status 104),
//! its disco#info and its vCard.

use super::*;
use causeway_bridge::Picture;

const UPDATE: &str = "vcard-temp:x:update";

fn photo(stanza: &Stanza) -> Option<String> {
    let Stanza::Presence(p) = stanza else {
        return None;
    };
    let x = p.payloads.iter().find(|x| x.is("x", UPDATE))?;
    Some(x.get_child("photo", UPDATE)?.text())
}

fn vcard(muc: &mut Muc, from: &FullJid, to: &str) -> Result<Element, StanzaError> {
    let to: Jid = to.parse().unwrap();
    let address = muc.addressing().parse(&to).unwrap();
    let get = Element::builder("vCard", "vcard-temp").build();
    muc.handle_iq(from.clone(), address, get, true)
        .map(|(answer, _)| answer.expect("a vCard"))
}

fn binval(card: &Element) -> Option<String> {
    let photo = card.get_child("PHOTO", "vcard-temp")?;
    Some(photo.get_child("BINVAL", "vcard-temp")?.text())
}

#[test]
fn member_and_room_pictures_reach_presences_vcards_and_disco() {
    let mut muc = muc();
    let laptop = resource("laptop");
    join_presence(&mut muc, &laptop, "alice");
    muc.handle_event(joined(
        "alice",
        &[("alice", Privilege::None), ("bob", Privilege::None)],
        "",
    ));
    let face = Picture::new(b"\x89PNG face".to_vec(), "image/png");
    let fx = muc.handle_event(Event::MemberPicture {
        user: user(),
        room: room(),
        nick: "bob".into(),
        picture: Some(face.clone()),
    });
    assert_eq!(fx.stanzas.len(), 1);
    assert_eq!(photo(&fx.stanzas[0]), Some(face.sha1.clone()));
    // The same picture again: nothing to tell.
    let again = Event::MemberPicture {
        user: user(),
        room: room(),
        nick: "bob".into(),
        picture: Some(face.clone()),
    };
    assert!(muc.handle_event(again).stanzas.is_empty());
    let card = vcard(&mut muc, &laptop, &format!("{ROOM}/bob")).unwrap();
    assert_eq!(binval(&card).as_deref(), Some("iVBORyBmYWNl"));
    // A nick change keeps it: the new nick's presence names it.
    let fx = muc.handle_event(Event::NickChanged {
        user: user(),
        rooms: vec![room()],
        old: "bob".into(),
        new: "robert".into(),
    });
    let photos: Vec<_> = fx.stanzas.iter().map(photo).collect();
    assert_eq!(photos, [None, Some(face.sha1.clone())]);
    assert!(vcard(&mut muc, &laptop, &format!("{ROOM}/bob")).is_err());
    // Removed: an empty photo, an empty vCard.
    let fx = muc.handle_event(Event::MemberPicture {
        user: user(),
        room: room(),
        nick: "robert".into(),
        picture: None,
    });
    assert_eq!(photo(&fx.stanzas[0]).as_deref(), Some(""));
    let card = vcard(&mut muc, &laptop, &format!("{ROOM}/robert")).unwrap();
    assert_eq!(binval(&card), None);

    // The room's: a presence from the room, status 104, the hash in disco#info.
    let sign = Picture::new(b"GIF89a sign".to_vec(), "image/gif");
    let fx = muc.handle_event(Event::RoomPicture {
        user: user(),
        room: room(),
        picture: Some(sign.clone()),
    });
    assert_eq!(fx.stanzas.len(), 1);
    assert_eq!(photo(&fx.stanzas[0]), Some(sign.sha1.clone()));
    // Changed: status 104 too.
    let other = Picture::new(b"GIF89a other".to_vec(), "image/gif");
    muc.handle_event(Event::RoomPicture {
        user: user(),
        room: room(),
        picture: Some(other),
    });
    let fx = muc.handle_event(Event::RoomPicture {
        user: user(),
        room: room(),
        picture: Some(sign.clone()),
    });
    assert_eq!(fx.stanzas.len(), 2);
    let Stanza::Message(changed) = &fx.stanzas[1] else {
        panic!("{:?}", fx.stanzas[1]);
    };
    assert_eq!(
        changed.from.as_ref().map(|f| f.to_string()).as_deref(),
        Some(ROOM)
    );
    let card = vcard(&mut muc, &laptop, ROOM).unwrap();
    assert_eq!(binval(&card).as_deref(), Some("R0lGODlhIHNpZ24="));
    let to: Jid = ROOM.parse().unwrap();
    let address = muc.addressing().parse(&to).unwrap();
    let query = Element::builder("query", ns::DISCO_INFO).build();
    let (info, _) = muc.handle_iq(laptop.clone(), address, query, true).unwrap();
    let info = format!("{:?}", info.unwrap());
    assert!(
        info.contains("muc#roominfo_avatarhash") && info.contains(&sign.sha1),
        "{info}"
    );
    // Someone entering now gets the room's picture in the join sequence.
    let phone = resource("phone");
    let fx = join_presence(&mut muc, &phone, "alice");
    let photos: Vec<_> = fx.stanzas.iter().filter_map(photo).collect();
    assert!(photos.contains(&sign.sha1), "{:?}", fx.stanzas);
}

#[test]
fn a_picture_the_client_names_is_asked_once_and_becomes_the_users() {
    let mut muc = Muc::new(IrcAddressing::matrix("matrix.gw"), true, 20);
    let laptop = resource("laptop");
    let to: Jid = "#room%hs.example@matrix.gw/alice".parse().unwrap();
    let address = muc.addressing().parse(&to).unwrap();
    let mut presence = Presence::available();
    let update = format!("<x xmlns='{UPDATE}'><photo>abc123</photo></x>");
    presence.payloads.push(update.parse().unwrap());
    let fx = muc.handle_presence(
        presence.clone(),
        laptop.clone(),
        to.clone(),
        address.clone(),
    );
    let asked: Vec<_> = fx
        .stanzas
        .iter()
        .filter_map(|s| match s {
            Stanza::Iq(tokio_xmpp::parsers::iq::Iq::Get {
                id, to, payload, ..
            }) => Some((id.clone(), to.clone(), payload.name().to_owned())),
            _ => None,
        })
        .collect();
    assert_eq!(asked.len(), 1, "{:?}", fx.stanzas);
    let (id, to_account, what) = asked[0].clone();
    assert_eq!(
        to_account.map(|t| t.to_string()).as_deref(),
        Some("alice@example.org")
    );
    assert_eq!(what, "vCard");
    // IRC shows no pictures: nothing is asked there.
    let mut irc = super::muc();
    let irc_room: Jid = format!("{ROOM}/alice").parse().unwrap();
    let irc_address = irc.addressing().parse(&irc_room).unwrap();
    let fx = irc.handle_presence(presence.clone(), laptop.clone(), irc_room, irc_address);
    assert!(!fx.stanzas.iter().any(|s| matches!(s, Stanza::Iq(_))));
    // Named again: not asked again.
    let again = muc.handle_presence(presence, laptop.clone(), to.clone(), address.clone());
    assert!(!again.stanzas.iter().any(|s| matches!(s, Stanza::Iq(_))));
    // The answer: the user's picture for the network.
    let card: Element =
        "<vCard xmlns='vcard-temp'><PHOTO><TYPE>image/png</TYPE><BINVAL>iVBORw==</BINVAL></PHOTO></vCard>"
            .parse()
            .unwrap();
    let mallory: BareJid = "mallory@example.org".parse().unwrap();
    assert!(
        muc.user_vcard(&id, Some(&mallory), Some(&card)).is_none(),
        "not from the account"
    );
    assert!(
        muc.user_vcard(&id, None, Some(&card)).is_none(),
        "not from the account"
    );
    let alice: BareJid = "alice@example.org".parse().unwrap();
    let request = muc
        .user_vcard(&id, Some(&alice), Some(&card))
        .expect("a request");
    let Action::SetPicture {
        picture: Some(picture),
    } = request.action
    else {
        panic!("{:?}", request.action);
    };
    assert_eq!(&*picture.data, b"\x89PNG");
    assert!(
        muc.user_vcard(&id, Some(&alice), Some(&card)).is_none(),
        "answered once"
    );
    // No picture any more: taken off at once.
    let mut gone = Presence::available();
    gone.payloads
        .push(format!("<x xmlns='{UPDATE}'><photo/></x>").parse().unwrap());
    let fx = muc.handle_presence(gone, laptop, to, address);
    assert!(fx
        .requests
        .iter()
        .any(|r| matches!(r.action, Action::SetPicture { picture: None })));
}
