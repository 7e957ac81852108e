//! Avatars (issue #19), end to end against Prosody and Synapse: a Matrix member's avatar is
//! their occupant's picture (XEP-0153: its hash in their presence, the image in the vCard
//! of their occupant JID), the room's avatar is the MUC's (XEP-0486: its hash in a presence
//! from the room and in its disco#info, the image in the room's vCard), and a change or a
//! removal is told as it happens.

use base64::Engine;
use serde_json::json;
use sha1::Digest;
use xmpp_client::minidom::Element;
use xmpp_client::parsers::presence::Presence;
use xmpp_client::{IqResponse, Stanza};

use crate::harness::muc::*;
use crate::harness::scene::Scene;
use crate::harness::TestClient;

const UPDATE: &str = "vcard-temp:x:update";
const VCARD: &str = "vcard-temp";

/// A `side`×`side` PNG of one colour: stored (uncompressed) deflate, so no encoder is
/// needed.
pub(crate) fn png(side: u32, rgb: [u8; 3]) -> Vec<u8> {
    fn crc(bytes: &[u8]) -> u32 {
        let mut c = 0xffff_ffffu32;
        for &b in bytes {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 == 1 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    }
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        out.extend((data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&body);
        out.extend(crc(&body).to_be_bytes());
    }
    let row: Vec<u8> = std::iter::once(0)
        .chain(rgb.iter().copied().cycle().take(side as usize * 3))
        .collect();
    let raw = row.repeat(side as usize);
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in &raw {
        a = (a + u32::from(byte)) % 65521;
        b = (b + a) % 65521;
    }
    let mut zlib = vec![0x78, 0x01];
    for (i, block) in raw.chunks(65535).enumerate() {
        let last = (i + 1) * 65535 >= raw.len();
        zlib.push(u8::from(last));
        let len = block.len() as u16;
        zlib.extend(len.to_le_bytes());
        zlib.extend((!len).to_le_bytes());
        zlib.extend_from_slice(block);
    }
    zlib.extend(((b << 16) | a).to_be_bytes());
    let mut header = Vec::new();
    header.extend(side.to_be_bytes());
    header.extend(side.to_be_bytes());
    header.extend([8, 2, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut out, b"IHDR", &header);
    chunk(&mut out, b"IDAT", &zlib);
    chunk(&mut out, b"IEND", &[]);
    out
}

/// The photo hash of the next presence from `from` that carries one (empty: no picture),
/// other than `not`.
async fn next_photo(client: &mut TestClient, from: &str, not: Option<&str>) -> String {
    client
        .expect(&format!("a photo from {from}"), |s| match s {
            Stanza::Presence(p) if sender(s) == from => {
                let hash = photo(p)?;
                (Some(hash.as_str()) != not).then_some(hash)
            }
            _ => None,
        })
        .await
}

/// The photo hashes of the next presences with a picture from `member` and from `room`,
/// whichever comes first.
async fn photos_of(client: &mut TestClient, member: &str, room: &str) -> (String, String) {
    let (mut of_member, mut of_room) = (None, None);
    while of_member.is_none() || of_room.is_none() {
        let (from, hash) = client
            .expect("a photo", |s| match s {
                Stanza::Presence(p) if [member, room].contains(&sender(s).as_str()) => {
                    Some((sender(s), photo(p).filter(|h| !h.is_empty())?))
                }
                _ => None,
            })
            .await;
        match from == member {
            true => of_member = Some(hash),
            false => of_room = Some(hash),
        }
    }
    (of_member.unwrap(), of_room.unwrap())
}

fn photo(p: &Presence) -> Option<String> {
    let x = p.payloads.iter().find(|x| x.is("x", UPDATE))?;
    Some(x.get_child("photo", UPDATE)?.text())
}

/// The image of the vCard of `jid`, and its type.
async fn vcard_photo(client: &mut TestClient, jid: &str) -> Option<(Vec<u8>, String)> {
    let IqResponse::Result(Some(card)) = client
        .get(jid, Element::builder("vCard", VCARD).build())
        .await
    else {
        panic!("no vCard from {jid}");
    };
    let photo = card.get_child("PHOTO", VCARD)?;
    let data = photo.get_child("BINVAL", VCARD)?.text();
    let kind = photo.get_child("TYPE", VCARD)?.text();
    let data = base64::engine::general_purpose::STANDARD
        .decode(data)
        .unwrap();
    Some((data, kind))
}

fn sha1_hex(data: &[u8]) -> String {
    sha1::Sha1::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The `muc#roominfo_avatarhash` of a room's disco#info.
async fn room_avatar_hash(client: &mut TestClient, room: &str) -> Option<String> {
    let query = Element::builder("query", "http://jabber.org/protocol/disco#info").build();
    let IqResponse::Result(Some(info)) = client.get(room, query).await else {
        panic!("no disco#info from {room}");
    };
    let form = info.get_child("x", "jabber:x:data")?;
    let field = form
        .children()
        .find(|f| f.attr("var") == Some("muc#roominfo_avatarhash"))?;
    Some(field.get_child("value", "jabber:x:data")?.text())
}

#[tokio::test]
async fn matrix_avatars_are_occupant_and_room_pictures() {
    let scene = Scene::matrix().await;
    let red = scene.bob.upload(png(128, [200, 0, 0]), "image/png").await;
    scene.bob.set_avatar(&red).await;
    scene.bob.set_displayname("Bob").await;
    let room = scene.public_room("pictured", "").await;
    let blue = scene.bob.upload(png(128, [0, 0, 200]), "image/png").await;
    let content = json!({ "url": blue });
    scene
        .bob
        .set_state(&room, "m.room.avatar", "", content)
        .await;
    let mut alice = scene.xmpp_user("alice").await;
    let room_jid = crate::matrix::room_jid("pictured");
    enter(&mut alice, &room_jid, "Alice").await;

    // Bob's picture: its hash in his presence, the image in his occupant's vCard. (The
    // room's comes in the same moment: both are waited for at once.)
    let bob = format!("{room_jid}/Bob");
    let (hash, room_hash) = photos_of(&mut alice, &bob, &room_jid).await;
    let (image, kind) = vcard_photo(&mut alice, &bob).await.expect("Bob's photo");
    assert_eq!(sha1_hex(&image), hash);
    assert_eq!(kind, "image/png");
    assert!(image.starts_with(b"\x89PNG"), "a PNG thumbnail");

    // The room's: in a presence from the room, its disco#info and its vCard.

    assert_ne!(room_hash, hash, "another picture");
    let (image, _) = vcard_photo(&mut alice, &room_jid)
        .await
        .expect("the room's photo");
    assert_eq!(sha1_hex(&image), room_hash);
    assert_eq!(
        room_avatar_hash(&mut alice, &room_jid).await,
        Some(room_hash.clone())
    );

    // A new avatar is told; a removed one too (an empty photo).
    let green = scene.bob.upload(png(128, [0, 200, 0]), "image/png").await;
    scene.bob.set_avatar(&green).await;
    let changed = next_photo(&mut alice, &bob, Some(&hash)).await;
    assert!(!changed.is_empty());
    let (image, _) = vcard_photo(&mut alice, &bob)
        .await
        .expect("Bob's new photo");
    assert_eq!(sha1_hex(&image), changed);

    // Someone entering later is shown them at once: Bob's in the presence that lists him,
    // the room's right after.
    let mut carol = scene.xmpp_user("carol").await;
    carol.send(join(&format!("{room_jid}/Carol"))).await;
    let (listed, room_listed) = photos_of(&mut carol, &bob, &room_jid).await;
    assert_eq!((listed, room_listed), (changed.clone(), room_hash));

    scene.bob.set_avatar("").await;
    assert_eq!(next_photo(&mut alice, &bob, Some(&changed)).await, "");
    assert_eq!(next_photo(&mut carol, &bob, Some(&changed)).await, "");
    assert_eq!(vcard_photo(&mut alice, &bob).await, None);
}

/// The XMPP user's own picture (the photo of their account's vCard, which their client
/// names in its presence) becomes their puppet's avatar, and goes with it.
#[tokio::test]
async fn an_xmpp_users_picture_is_their_puppets_avatar() {
    let scene = Scene::matrix().await;
    scene.public_room("faces", "").await;
    let mut alice = scene.xmpp_user("alice").await;
    let image = png(64, [10, 120, 200]);
    let binval = base64::engine::general_purpose::STANDARD.encode(&image);
    let card = format!(
        "<vCard xmlns='{VCARD}'><PHOTO><TYPE>image/png</TYPE><BINVAL>{binval}</BINVAL></PHOTO></vCard>"
    );
    let set = alice.set_own(card.parse::<Element>().unwrap()).await;
    assert!(matches!(set, IqResponse::Result(_)), "{set:?}");

    let room_jid = crate::matrix::room_jid("faces");
    let mut entering = join(&format!("{room_jid}/Alice"));
    entering.payloads.push(photo_update(&sha1_hex(&image)));
    alice.send(entering).await;
    self_presence(&mut alice, "Alice").await;
    let puppet = Scene::puppet("alice");
    let avatar = puppet_avatar(&scene, &puppet, |a| !a.is_empty()).await;
    let (data, _) = scene.bob.download(&avatar).await;
    assert_eq!(data, image);

    // No picture any more: no avatar.
    let mut update = Presence::available();
    update.to = Some(format!("{room_jid}/Alice").parse().unwrap());
    update.payloads.push(photo_update(""));
    alice.send(update).await;
    puppet_avatar(&scene, &puppet, str::is_empty).await;
}

fn photo_update(hash: &str) -> Element {
    format!("<x xmlns='{UPDATE}'><photo>{hash}</photo></x>")
        .parse()
        .unwrap()
}

/// The puppet's avatar once `wanted` accepts it (empty: none), asked again until then.
async fn puppet_avatar(
    scene: &Scene<crate::harness::scene::MatrixSide>,
    puppet: &str,
    wanted: impl Fn(&str) -> bool,
) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let profile = scene
            .bob
            .request(reqwest::Method::GET, &["profile", puppet], None)
            .await;
        let avatar = profile["avatar_url"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if wanted(&avatar) {
            return avatar;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the puppet's avatar is {avatar:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
