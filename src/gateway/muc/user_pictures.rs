//! The XMPP user's own picture, shown as theirs on the network: a presence from their
//! client that names a picture (XEP-0153's hash) the gateway has not seen makes it ask the
//! vCard of their account; the answer's photo becomes `Action::SetPicture`. Nothing is
//! asked again while the hash stays the same.

use std::collections::HashMap;

use base64::Engine;
use causeway_bridge::{Action, Picture, UserRef};
use tokio_xmpp::jid::{BareJid, FullJid};
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::presence::Presence;

use super::{new_id, Effects, Muc, OnError, Request, VCARD};

/// The ids of the gateway's vCard requests.
pub const PHOTO_ID: &str = "photo-";
/// The largest picture taken from a vCard.
const MAX_BYTES: usize = 512 * 1024;
/// Requests waiting at most; past it the oldest are forgotten.
const WAITING: usize = 10_000;
const UPDATE: &str = "vcard-temp:x:update";

/// What the gateway knows of the users' own pictures.
#[derive(Debug, Default)]
pub(super) struct UserPictures {
    /// The hash each user's client last named.
    named: HashMap<BareJid, String>,
    /// vCard requests waiting, by id: whose.
    asked: HashMap<String, BareJid>,
}

impl Muc {
    /// A presence from `from`'s client: a picture it names that the gateway has not seen
    /// is asked for (the user's vCard), one that is gone is taken off.
    pub(super) fn user_photo(&mut self, fx: &mut Effects, from: &FullJid, presence: &Presence) {
        // Only where the network shows the gateway's puppets with pictures.
        if !self.addressing.is_matrix() {
            return;
        }
        let Some(hash) = presence
            .payloads
            .iter()
            .find(|p| p.is("x", UPDATE))
            .and_then(|x| x.get_child("photo", UPDATE))
            .map(|photo| photo.text().trim().to_ascii_lowercase())
        else {
            return;
        };
        let user = from.to_bare();
        let pictures = &mut self.user_pictures;
        if pictures.named.get(&user) == Some(&hash) {
            return;
        }
        pictures.named.insert(user.clone(), hash.clone());
        if hash.is_empty() {
            fx.requests.push(set_picture(&user, None));
            return;
        }
        if pictures.asked.len() >= WAITING {
            pictures.asked.clear();
        }
        let id = format!("{PHOTO_ID}{}", new_id());
        pictures.asked.insert(id.clone(), user.clone());
        let get = Iq::Get {
            from: self.addressing.gateway_jid().ok().map(Into::into),
            to: Some(user.into()),
            id,
            payload: Element::builder("vCard", VCARD).build(),
        };
        fx.stanzas.push(get.into());
    }

    /// The answer to the vCard request `id` from `from` (its vCard, none when refused):
    /// the picture it holds for the network. Only the account asked answers.
    pub fn user_vcard(
        &mut self,
        id: &str,
        from: Option<&BareJid>,
        vcard: Option<&Element>,
    ) -> Option<Request> {
        let asked = self.user_pictures.asked.get(id)?;
        if from != Some(asked) {
            return None;
        }
        let user = self.user_pictures.asked.remove(id)?;
        // None usable (a PEP-only avatar, a vCard kept private): not asked again until the
        // client names another picture.
        let picture = vcard.and_then(photo_of)?;
        Some(set_picture(&user, Some(picture)))
    }
}

fn set_picture(user: &BareJid, picture: Option<Picture>) -> Request {
    Request {
        user: UserRef(user.to_string()),
        action: Action::SetPicture { picture },
        on_error: OnError::Quiet,
    }
}

/// The image of a vCard's PHOTO, if it holds one small enough.
fn photo_of(vcard: &Element) -> Option<Picture> {
    let photo = vcard.get_child("PHOTO", VCARD)?;
    let data: String = photo
        .get_child("BINVAL", VCARD)?
        .text()
        .split_whitespace()
        .collect();
    if data.len() > MAX_BYTES / 3 * 4 + 4 {
        return None;
    }
    let data = base64::engine::general_purpose::STANDARD
        .decode(data)
        .ok()
        .filter(|d| !d.is_empty() && d.len() <= MAX_BYTES)?;
    let kind = photo
        .get_child("TYPE", VCARD)
        .map(|t| t.text().trim().to_owned())
        .filter(|t| t.starts_with("image/"))?;
    Some(Picture::new(data, kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(photo: &str) -> Element {
        format!("<vCard xmlns='vcard-temp'>{photo}</vCard>")
            .parse()
            .unwrap()
    }

    #[test]
    fn a_vcard_photo_is_a_picture_when_it_is_an_image() {
        let picture = photo_of(&card(
            "<PHOTO><TYPE>image/png</TYPE><BINVAL>iVBO\nRw==</BINVAL></PHOTO>",
        ))
        .unwrap();
        assert_eq!(&*picture.data, b"\x89PNG");
        assert_eq!(picture.mimetype, "image/png");
        assert_eq!(photo_of(&card("")), None);
        assert_eq!(
            photo_of(&card(
                "<PHOTO><TYPE>text/html</TYPE><BINVAL>iVBORw==</BINVAL></PHOTO>"
            )),
            None
        );
        assert_eq!(
            photo_of(&card(
                "<PHOTO><TYPE>image/png</TYPE><BINVAL>not base64!</BINVAL></PHOTO>"
            )),
            None
        );
    }
}
