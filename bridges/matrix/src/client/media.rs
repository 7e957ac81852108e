//! Files through the homeserver's media repository: uploads as the puppet (or the user's
//! own account, encrypted in an encrypted room), downloads with authentication (Matrix
//! 1.11's authenticated media; a personal login's encrypted files decrypted by matrix-sdk).

use std::time::Duration;

use matrix_sdk::media::{MediaFormat, MediaRequestParameters, MediaThumbnailSettings};
use ruma::api::client::media::create_content;
use ruma::events::room::MediaSource;
use ruma::media::Method;
use ruma::{MxcUri, OwnedMxcUri, RoomId, UserId};

use super::{sdk_error, CallError, Client, Reach, Retry};

/// How long a file transfer may keep trying while the homeserver is away.
const PATIENCE: Duration = Duration::from_secs(60);

impl Client {
    /// Upload `data` to the media repository as `user`, for `room` (none: for no room, a
    /// profile's picture): where the room is encrypted (a personal login's), the file is
    /// encrypted first and only its key goes in the event.
    pub async fn upload(
        &self,
        room: Option<&RoomId>,
        data: Vec<u8>,
        mimetype: &str,
        name: &str,
        user: &UserId,
    ) -> Result<MediaSource, CallError> {
        let Reach::Personal(sdk) = &self.reach else {
            let mut request = create_content::v3::Request::new(data);
            request.content_type = Some(mimetype.to_owned());
            request.filename = Some(name.to_owned());
            let sent = self.call(request, Some(user), Retry::For(PATIENCE)).await?;
            return Ok(MediaSource::Plain(sent.content_uri));
        };
        let encrypted = match room.map(|room| (room, sdk.get_room(room))) {
            None => false,
            Some((_, Some(joined))) => joined
                .latest_encryption_state()
                .await
                .map_err(|e| sdk_error(&e))?
                .is_encrypted(),
            Some((room, None)) => return Err(CallError::Invalid(format!("not in {room}"))),
        };
        if encrypted {
            let mut reader = std::io::Cursor::new(data);
            let file = sdk
                .upload_encrypted_file(&mut reader)
                .await
                .map_err(|e| sdk_error(&e))?;
            return Ok(MediaSource::Encrypted(Box::new(file)));
        }
        let mime: mime::Mime = mimetype.parse().unwrap_or(mime::APPLICATION_OCTET_STREAM);
        let sent = sdk
            .media()
            .upload(&mime, data, None)
            .await
            .map_err(|e| sdk_error(&e))?;
        Ok(MediaSource::Plain(sent.content_uri))
    }

    /// The content of the file at `source`, fetched with the appservice's token or the
    /// user's own (and decrypted, for an encrypted file of a personal login). The
    /// appservice reads no more than `max` bytes and one: a longer answer says the file is
    /// too large. matrix-sdk reads a personal login's file whole (the homeserver's own
    /// upload limit bounds it).
    pub async fn download(&self, source: &MediaSource, max: u64) -> Result<Vec<u8>, CallError> {
        if let Reach::Personal(sdk) = &self.reach {
            let request = MediaRequestParameters {
                source: source.clone(),
                format: MediaFormat::File,
            };
            return sdk
                .media()
                .get_media_content(&request, false)
                .await
                .map_err(|e| sdk_error(&e));
        }
        let MediaSource::Plain(uri) = source else {
            return Err(CallError::Invalid(
                "an encrypted file, which only a personal login can read".into(),
            ));
        };
        self.media_get(uri, "download", "", max).await
    }

    /// A `size`-pixel square thumbnail of the image at `uri` (an avatar), read up to `max`
    /// bytes and one.
    pub async fn thumbnail(&self, uri: &MxcUri, size: u32, max: u64) -> Result<Vec<u8>, CallError> {
        if let Reach::Personal(sdk) = &self.reach {
            let settings =
                MediaThumbnailSettings::with_method(Method::Crop, size.into(), size.into());
            let request = MediaRequestParameters {
                source: MediaSource::Plain(uri.to_owned()),
                format: MediaFormat::Thumbnail(settings),
            };
            return sdk
                .media()
                .get_media_content(&request, false)
                .await
                .map_err(|e| sdk_error(&e));
        }
        let query = format!("?width={size}&height={size}&method=crop");
        self.media_get(uri, "thumbnail", &query, max).await
    }

    /// The avatar of `user` (a puppet) as the homeserver has it, `None` when it has none
    /// (or the homeserver does not say; a personal login asks nothing).
    pub async fn avatar_of(&self, user: &UserId) -> Option<OwnedMxcUri> {
        let path = format!("/_matrix/client/v3/profile/{user}/avatar_url");
        let answer = self.appservice_get(&path).await.ok()?;
        let answer = answer.bytes().await.ok()?;
        let answer: serde_json::Value = serde_json::from_slice(&answer).ok()?;
        let avatar = answer["avatar_url"].as_str().filter(|a| !a.is_empty())?;
        Some(OwnedMxcUri::from(avatar))
    }

    /// A GET of `path` on the homeserver with the appservice's token.
    async fn appservice_get(&self, path: &str) -> Result<reqwest::Response, CallError> {
        let Reach::Appservice { base, as_token } = &self.reach else {
            return Err(CallError::Invalid("no appservice to ask with".into()));
        };
        self.http
            .get(format!("{base}{path}"))
            .bearer_auth(as_token)
            .timeout(PATIENCE)
            .send()
            .await
            .map_err(|e| CallError::Unreachable(e.to_string()))
    }

    /// An authenticated media request of the appservice (`download`, `thumbnail`) for
    /// `uri`, its answer streamed and cut after `max` bytes and one.
    async fn media_get(
        &self,
        uri: &MxcUri,
        what: &str,
        query: &str,
        max: u64,
    ) -> Result<Vec<u8>, CallError> {
        let (server, id) = uri
            .parts()
            .map_err(|e| CallError::Invalid(format!("not a media address: {e}")))?;
        let path = format!("/_matrix/client/v1/media/{what}/{server}/{id}{query}");
        let mut response = self.appservice_get(&path).await?;
        let status = response.status();
        if !status.is_success() {
            let answer = response.bytes().await.unwrap_or_default();
            let answer: serde_json::Value = serde_json::from_slice(&answer).unwrap_or_default();
            return Err(CallError::Refused {
                status: status.as_u16(),
                errcode: answer["errcode"].as_str().unwrap_or("M_UNKNOWN").to_owned(),
                error: answer["error"].as_str().unwrap_or_default().to_owned(),
            });
        }
        let mut data = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| CallError::Unreachable(e.to_string()))?
        {
            data.extend_from_slice(&chunk);
            if data.len() as u64 > max {
                break;
            }
        }
        Ok(data)
    }
}
