//! A file an XMPP user sends, made a Matrix media message: fetched from the address the
//! client gave, uploaded to the homeserver as the user's puppet (or account), described by
//! its type, size and name.

use causeway_bridge::Media;
use ruma::events::room::MediaSource;
use ruma::{RoomId, UserId};
use serde_json::{json, Value};

use super::fetch::{fetch, Unfetched};
use super::MediaSettings;
use crate::client::Client;

/// The content of the media message for `media`, sent with `body` as its text: the body is
/// the caption when it says more than the address, else the XEP-0066 description is.
pub(crate) async fn content(
    client: &Client,
    settings: &MediaSettings,
    room: &RoomId,
    sender: &UserId,
    media: &Media,
    body: &str,
) -> Result<Value, Unfetched> {
    let fetched = fetch(&media.url, settings).await?;
    let name = fetched.name;
    let size = fetched.data.len();
    let source = client
        .upload(Some(room), fetched.data, &fetched.mimetype, &name, sender)
        .await
        .map_err(|e| Unfetched::Failed(format!("the homeserver refused it ({e})")))?;
    let said = Some(body.trim()).filter(|b| !b.is_empty() && *b != media.url);
    let caption = said.or(media.caption.as_deref()).unwrap_or(&name);
    let mut content = json!({
        "msgtype": msgtype(&fetched.mimetype),
        "body": caption,
        "filename": name,
        "info": { "mimetype": fetched.mimetype, "size": size },
    });
    match source {
        MediaSource::Plain(uri) => content["url"] = json!(uri),
        MediaSource::Encrypted(file) => {
            content["file"] = serde_json::to_value(&file).expect("an encrypted file is JSON")
        }
    }
    Ok(content)
}

/// The message type a file of `mimetype` is sent as: SVG (which may carry script) and
/// anything not an image, video or sound is a plain file.
fn msgtype(mimetype: &str) -> &'static str {
    match mimetype.split('/').next() {
        Some("image") if mimetype != "image/svg+xml" => "m.image",
        Some("video") => "m.video",
        Some("audio") => "m.audio",
        _ => "m.file",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_choose_the_message() {
        assert_eq!(msgtype("image/png"), "m.image");
        assert_eq!(msgtype("image/svg+xml"), "m.file");
        assert_eq!(msgtype("video/mp4"), "m.video");
        assert_eq!(msgtype("audio/ogg"), "m.audio");
        assert_eq!(msgtype("application/pdf"), "m.file");
    }
}
