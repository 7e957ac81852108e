//! Files both ways. A Matrix media event reaches XMPP users as a link to the gateway's own
//! endpoint ([`serve`]): a random token, kept in the store with the file's source and the
//! login that may fetch it, valid for the configured lifetime; the endpoint fetches the
//! file from the homeserver with authentication when the link is opened. A file an XMPP
//! user sends (an out-of-band link) is fetched ([`fetch`]) and uploaded to the homeserver,
//! and becomes an `m.image`, `m.video`, `m.audio` or `m.file` event.

pub(crate) mod fetch;
pub(crate) mod serve;
pub(crate) mod upload;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use causeway_bridge::{Media, UserRef};
use ruma::events::room::message::MessageType;
use ruma::events::room::MediaSource;
use tracing::warn;
use url::Url;

use crate::store::{MatrixStore, OfferedFile};

/// How files cross: the links' public address, where the endpoint listens, the limits.
#[derive(Debug, Clone)]
pub struct MediaSettings {
    /// The public address the endpoint is reached at (`https://gw.example.org/media`);
    /// `None`: Matrix files are shown by name, with no link.
    pub public_url: Option<Url>,
    /// Where the endpoint listens.
    pub listen: SocketAddr,
    /// The largest file carried either way, in bytes.
    pub max_size: u64,
    /// How long a link works.
    pub lifetime: Duration,
    /// Whether files an XMPP user links to may be fetched from loopback and private
    /// addresses (a sandbox's upload service); off, the gateway fetches nothing inside.
    pub fetch_private: bool,
}

impl MediaSettings {
    /// No links, the usual limits (the unit tests').
    #[cfg(test)]
    pub(crate) fn unlinked() -> MediaSettings {
        MediaSettings {
            public_url: None,
            listen: ([127, 0, 0, 1], 0).into(),
            max_size: 50 * 1024 * 1024,
            lifetime: Duration::from_secs(86_400),
            fetch_private: false,
        }
    }
}

/// A file a Matrix event carries.
#[derive(Debug, Clone)]
pub(crate) struct MatrixFile {
    /// `image`, `video`, `audio` or `file`.
    pub what: &'static str,
    /// Its file name.
    pub name: String,
    /// Where it is.
    pub source: MediaSource,
    /// Its MIME type, when the event says.
    pub mimetype: Option<String>,
    /// Its size, when the event says.
    pub size: Option<u64>,
    /// The caption: the body, when the event names the file apart (Matrix 1.10).
    pub caption: Option<String>,
}

/// The file a message carries, if it is a media message.
pub(crate) fn file_of(content: &MessageType) -> Option<MatrixFile> {
    let (what, body, filename, source, info) = match content {
        MessageType::Image(c) => {
            let info = c.info.as_ref().map(|i| (i.mimetype.clone(), i.size));
            ("image", &c.body, &c.filename, &c.source, info)
        }
        MessageType::Video(c) => {
            let info = c.info.as_ref().map(|i| (i.mimetype.clone(), i.size));
            ("video", &c.body, &c.filename, &c.source, info)
        }
        MessageType::Audio(c) => {
            let info = c.info.as_ref().map(|i| (i.mimetype.clone(), i.size));
            ("audio", &c.body, &c.filename, &c.source, info)
        }
        MessageType::File(c) => {
            let info = c.info.as_ref().map(|i| (i.mimetype.clone(), i.size));
            ("file", &c.body, &c.filename, &c.source, info)
        }
        _ => return None,
    };
    let (mimetype, size) = info.unwrap_or_default();
    let caption = filename
        .as_ref()
        .filter(|name| *name != body && !body.trim().is_empty())
        .map(|_| body.clone());
    Some(MatrixFile {
        what,
        name: safe_name(filename.as_deref().unwrap_or(body)),
        source: source.clone(),
        mimetype,
        size: size.map(u64::from),
        caption,
    })
}

/// A file name as the gateway hands it on: no path, no control or hiding characters, not empty, at
/// most 200 characters (its extension kept).
pub(crate) fn safe_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let clean: String = last
        .chars()
        .filter(|c| !c.is_control() && !hides(*c) && !matches!(c, '"' | '<' | '>'))
        .collect();
    let clean = clean.trim().trim_start_matches('.');
    if clean.is_empty() {
        return "file".to_owned();
    }
    if clean.chars().count() <= 200 {
        return clean.to_owned();
    }
    let extension = clean
        .rsplit_once('.')
        .map(|(_, e)| e)
        .filter(|e| e.chars().count() <= 10);
    let stem: String = clean.chars().take(180).collect();
    match extension {
        Some(e) => format!("{stem}.{e}"),
        None => stem,
    }
}

/// Whether `c` reorders or hides text (bidirectional controls, zero-width characters), so
/// that `cat\u{202e}gnp.exe` cannot pass for a PNG.
fn hides(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

/// `size` bytes as people read it.
pub(crate) fn readable_size(size: u64) -> String {
    const MB: u64 = 1024 * 1024;
    match size {
        s if s >= MB => format!("{:.1} MB", s as f64 / MB as f64),
        s if s >= 1024 => format!("{} KB", s / 1024),
        s => format!("{s} bytes"),
    }
}

/// The links handed out for Matrix files.
#[derive(Debug)]
pub(crate) struct Shelf {
    settings: MediaSettings,
    store: Arc<dyn MatrixStore>,
    /// Turns to send a file.
    sending: tokio::sync::Semaphore,
}

/// Files fetched and uploaded at once.
const SENT_AT_ONCE: usize = 4;

impl Shelf {
    pub(crate) fn new(settings: MediaSettings, store: Arc<dyn MatrixStore>) -> Shelf {
        Shelf {
            settings,
            store,
            sending: tokio::sync::Semaphore::new(SENT_AT_ONCE),
        }
    }

    /// The limits in force.
    pub(crate) fn settings(&self) -> &MediaSettings {
        &self.settings
    }

    /// How `file`, carried by the event `event_id`, reaches XMPP: a message whose body is
    /// the gateway's link to it (with the link as XEP-0066 data, so that clients show it
    /// inline), fetched by `owner`'s login (the appservice's when `None`), one link per
    /// event and login; or, when it cannot be linked, text saying what it was and why it did
    /// not come.
    pub(crate) async fn offer(
        &self,
        owner: Option<&UserRef>,
        event_id: &str,
        file: &MatrixFile,
    ) -> (String, Option<Box<Media>>) {
        let MatrixFile { what, name, .. } = file;
        let Some(base) = &self.settings.public_url else {
            return (without_link(file), None);
        };
        if let Some(size) = file.size.filter(|size| *size > self.settings.max_size) {
            let text = format!(
                "[{what}: {name}, {}: larger than the {} the gateway passes on]",
                readable_size(size),
                readable_size(self.settings.max_size)
            );
            return (text, None);
        }
        let offered = OfferedFile {
            token: format!("{:032x}", rand::random::<u128>()),
            event_id: event_id.to_owned(),
            owner: owner.map(|user| user.0.clone()),
            source: serde_json::to_string(&file.source).expect("a media source is JSON"),
            name: name.clone(),
            mimetype: file.mimetype.clone(),
            size: file.size,
            expires: SystemTime::now() + self.settings.lifetime,
        };
        let token = match self.store.offer_file(&offered).await {
            Ok(token) => token,
            Err(e) => {
                warn!(error = %e, "cannot keep a file's link");
                let text = format!("[{what}: {name}: the gateway could not link it]");
                return (text, None);
            }
        };
        let url = link(base, &token, name);
        let media = Media {
            url: url.clone(),
            name: Some(name.clone()),
            mimetype: file.mimetype.clone(),
            size: file.size,
            caption: file.caption.clone(),
        };
        (url, Some(Box::new(media)))
    }

    /// The event `event_id` was redacted: its file's links no longer work.
    pub(crate) async fn withdraw(&self, event_id: &str) {
        if let Err(e) = self.store.withdraw_files(event_id).await {
            warn!(error = %e, "cannot withdraw a redacted file's links");
        }
    }

    /// A turn to fetch and upload a file: a few at a time, so that memory stays within a
    /// few times the size limit however many users send files at once.
    pub(crate) async fn sending_turn(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.sending.acquire().await.ok()
    }
}

/// A file shown with no link: what it is, and its `mxc://` address when it has one.
fn without_link(file: &MatrixFile) -> String {
    let MatrixFile { what, name, .. } = file;
    match &file.source {
        MediaSource::Plain(uri) => format!("[{what}: {name}] {uri}"),
        MediaSource::Encrypted(_) => format!("[encrypted {what}: {name}]"),
    }
}

/// The public link of `token`, ending in the file's name (percent-encoded), which clients
/// show and save it under.
fn link(base: &Url, token: &str, name: &str) -> String {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().push(token).push(name);
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lose_paths_and_control_characters() {
        assert_eq!(safe_name("../../etc/passwd"), "passwd");
        assert_eq!(safe_name("C:\\Users\\x\\cat.png"), "cat.png");
        assert_eq!(safe_name("a\u{7}b\n\"c\".png"), "abc.png");
        assert_eq!(safe_name("..."), "file");
        assert_eq!(safe_name("cat\u{202e}gnp.exe"), "catgnp.exe");
        assert_eq!(safe_name("a\u{200b}b.png"), "ab.png");
        assert_eq!(safe_name(".bashrc"), "bashrc");
        let long = format!("{}.jpeg", "x".repeat(500));
        let kept = safe_name(&long);
        assert_eq!(kept.chars().count(), 185);
        assert!(kept.ends_with(".jpeg"));
    }

    #[test]
    fn links_end_in_the_name_percent_encoded() {
        let base = Url::parse("https://gw.example.org/media/").unwrap();
        assert_eq!(
            link(&base, "ab12", "a cat?#.png"),
            "https://gw.example.org/media/ab12/a%20cat%3F%23.png"
        );
        let bare = Url::parse("https://gw.example.org").unwrap();
        assert_eq!(link(&bare, "ab12", "x"), "https://gw.example.org/ab12/x");
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(readable_size(512), "512 bytes");
        assert_eq!(readable_size(2048), "2 KB");
        assert_eq!(readable_size(50 * 1024 * 1024), "50.0 MB");
    }
}
