//! Fetching the file an XMPP user links to (an XEP-0363 upload, usually), before it goes to
//! the homeserver: over HTTP(S) only, from public addresses only unless the configuration
//! allows private ones (every address the name resolves to is checked, and the connection
//! made to the checked one, so that a second resolution cannot point inside), redirects
//! followed a few times and checked the same way, never more than the size limit read.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, LOCATION};
use url::Url;

use super::{readable_size, safe_name, MediaSettings};

/// Redirects followed (an upload service may send the client to its storage).
const REDIRECTS: usize = 3;
/// How long the whole fetch may take.
const TIMEOUT: Duration = Duration::from_secs(60);

/// A fetched file.
#[derive(Debug)]
pub(crate) struct Fetched {
    /// Its content.
    pub data: Vec<u8>,
    /// Its MIME type: what the server said, checked against the content for images.
    pub mimetype: String,
    /// Its file name, from the address.
    pub name: String,
}

/// Why a file was not fetched, as the sender reads it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Unfetched {
    #[error("it is larger than the {} the gateway passes on", readable_size(*.0))]
    TooLarge(u64),
    #[error("its address is inside the gateway's network, which the gateway does not fetch from")]
    Private,
    #[error("it could not be fetched: {0}")]
    Failed(String),
}

/// Fetch the file at `url`, as `settings` allow.
pub(crate) async fn fetch(url: &str, settings: &MediaSettings) -> Result<Fetched, Unfetched> {
    let mut url = Url::parse(url).map_err(|e| Unfetched::Failed(format!("a bad address ({e})")))?;
    for _ in 0..=REDIRECTS {
        let response = request(&url, settings).await?;
        if response.status().is_redirection() {
            let next = response
                .headers()
                .get(LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| url.join(l).ok())
                .ok_or_else(|| Unfetched::Failed("a redirect to nowhere".into()))?;
            url = next;
            continue;
        }
        if !response.status().is_success() {
            return Err(Unfetched::Failed(format!(
                "the server answered {}",
                response.status()
            )));
        }
        return read(url, response, settings.max_size).await;
    }
    Err(Unfetched::Failed("too many redirects".into()))
}

/// One request to `url`, made to an address checked first.
async fn request(url: &Url, settings: &MediaSettings) -> Result<reqwest::Response, Unfetched> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Unfetched::Failed(format!(
            "{}: addresses are not fetched",
            url.scheme()
        )));
    }
    let host = url
        .host_str()
        .ok_or_else(|| Unfetched::Failed("an address without a host".into()))?;
    let port = url.port_or_known_default().unwrap_or(443);
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addresses: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((bare, port))
            .await
            .map_err(|e| Unfetched::Failed(format!("{host} not found ({e})")))?
            .collect(),
    };
    if addresses.is_empty() {
        return Err(Unfetched::Failed(format!("{host} not found")));
    }
    if !settings.fetch_private && addresses.iter().any(|a| !public(a.ip())) {
        return Err(Unfetched::Private);
    }
    // No proxy from the environment (it would resolve the name again), and only the
    // addresses checked.
    let client = reqwest::Client::builder()
        .user_agent(concat!("causeway/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .resolve_to_addrs(bare, &addresses)
        .connect_timeout(Duration::from_secs(10))
        .timeout(TIMEOUT)
        .build()
        .map_err(|e| Unfetched::Failed(e.to_string()))?;
    client
        .get(url.clone())
        .send()
        .await
        .map_err(|e| Unfetched::Failed(reason(&e)))
}

/// The body, read up to `max` bytes.
async fn read(url: Url, mut response: reqwest::Response, max: u64) -> Result<Fetched, Unfetched> {
    if response.content_length().is_some_and(|len| len > max) {
        return Err(Unfetched::TooLarge(max));
    }
    let declared = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|t| t.to_str().ok())
        .and_then(|t| t.split(';').next())
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty() && t.is_ascii());
    let mut data = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| Unfetched::Failed(reason(&e)))?
    {
        if (data.len() + chunk.len()) as u64 > max {
            return Err(Unfetched::TooLarge(max));
        }
        data.extend_from_slice(&chunk);
    }
    let name = url
        .path_segments()
        .and_then(|mut segments| segments.next_back().map(str::to_owned))
        .map(|last| percent_decoded(&last))
        .map(|last| safe_name(&last))
        .unwrap_or_else(|| "file".to_owned());
    let mimetype = checked_type(declared.as_deref(), &name, &data);
    Ok(Fetched {
        data,
        mimetype,
        name,
    })
}

/// The file's type: the declared one (or one the name implies), except that an image whose
/// content is not one of the image formats clients show is any file.
fn checked_type(declared: Option<&str>, name: &str, data: &[u8]) -> String {
    let claimed = declared
        .filter(|t| *t != "application/octet-stream")
        .map(str::to_owned)
        .or_else(|| by_extension(name).map(str::to_owned))
        .unwrap_or_else(|| "application/octet-stream".to_owned());
    // Only the formats clients show count as images.
    let shown = crate::pictures::image_type(data).is_some();
    if claimed.starts_with("image/") && claimed != "image/svg+xml" && !shown {
        return "application/octet-stream".to_owned();
    }
    claimed
}

fn by_extension(name: &str) -> Option<&'static str> {
    let (_, extension) = name.rsplit_once('.')?;
    Some(match extension.to_ascii_lowercase().as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "mp4" | "m4v" => "video/mp4",
        "webm" => "video/webm",
        "mp3" => "audio/mpeg",
        "m4a" => "audio/mp4",
        "ogg" | "oga" | "opus" => "audio/ogg",
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        _ => return None,
    })
}

/// Whether the gateway may fetch from `ip` with private addresses refused: not loopback,
/// private, shared (CGNAT), link-local, reserved, benchmarking, multicast or unspecified,
/// nor an IPv6 address that embeds an IPv4 one (mapped, compatible, NAT64, 6to4) unless
/// that one is public, nor unique-local or site-local IPv6.
fn public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(a == 0
                || v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_multicast()
                || a >= 240
                || (a == 100 && (b & 0xc0) == 64)
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (b & 0xfe) == 18))
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let embedded = |hi: u16, lo: u16| {
                let [a, b] = hi.to_be_bytes();
                let [c, d] = lo.to_be_bytes();
                IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, d))
            };
            if let Some(v4) = v6.to_ipv4_mapped() {
                return public(IpAddr::V4(v4));
            }
            if v6.is_loopback() || v6.is_unspecified() {
                return false;
            }
            if s[..6] == [0; 6] || s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                return public(embedded(s[6], s[7]));
            }
            if s[0] == 0x2002 {
                return public(embedded(s[1], s[2]));
            }
            !(v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] & 0xffc0) == 0xfec0)
        }
    }
}

fn percent_decoded(segment: &str) -> String {
    url::form_urlencoded::parse(format!("n={}", segment.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// A transport error in a few words.
fn reason(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "the server took too long".into()
    } else if e.is_connect() {
        "the server could not be reached".into()
    } else {
        "the transfer broke off".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_unless_allowed() {
        for inside in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "169.254.1.1",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "192.0.0.8",
            "198.18.0.1",
            "240.0.0.1",
            "fec0::1",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2002:7f00:1::",
            "::",
        ] {
            assert!(!public(inside.parse().unwrap()), "{inside}");
        }
        for outside in [
            "93.184.216.34",
            "2606:2800:220:1::1",
            "64:ff9b::5db8:d822",
            "::ffff:93.184.216.34",
        ] {
            assert!(public(outside.parse().unwrap()), "{outside}");
        }
    }

    #[test]
    fn an_image_must_look_like_one() {
        let png = b"\x89PNG\r\n\x1a\nrest";
        assert_eq!(checked_type(Some("image/png"), "a.png", png), "image/png");
        assert_eq!(checked_type(None, "a.png", png), "image/png");
        assert_eq!(
            checked_type(Some("image/png"), "a.png", b"<html>"),
            "application/octet-stream"
        );
        assert_eq!(
            checked_type(None, "notes", b"x"),
            "application/octet-stream"
        );
        assert_eq!(
            checked_type(Some("image/svg+xml"), "a.svg", b"<svg/>"),
            "image/svg+xml"
        );
    }

    #[test]
    fn names_come_from_the_address_decoded() {
        assert_eq!(percent_decoded("a%20cat.png"), "a cat.png");
        assert_eq!(percent_decoded("a+b.png"), "a+b.png");
        assert_eq!(
            safe_name(&percent_decoded("..%2F..%2Fetc%2Fpasswd")),
            "passwd"
        );
    }
}
