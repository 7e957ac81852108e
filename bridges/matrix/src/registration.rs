//! The appservice registration: written by `causeway generate-registration`, read by the
//! homeserver (`app_service_config_files`) and by the gateway at start.

use std::path::Path;

use rand::distr::{Alphanumeric, SampleString};
use ruma::api::appservice::{Namespace, Namespaces, Registration, RegistrationInit};

/// Why the registration file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        source: std::io::Error,
    },
    /// The file is not a registration.
    #[error("{path}: not an appservice registration: {source}")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong.
        source: serde_norway::Error,
    },
    /// A token is empty.
    #[error("{path}: {field} is empty")]
    Empty {
        /// The file.
        path: String,
        /// The field.
        field: &'static str,
    },
}

/// A fresh registration for a gateway whose puppets are `@<user_prefix>…:<server_name>`
/// and whose transaction listener is reached at `url`; tokens are 64 random characters.
pub fn generate(server_name: &str, user_prefix: &str, url: &str) -> Registration {
    let token = || Alphanumeric.sample_string(&mut rand::rng(), 64);
    let users = vec![Namespace::new(
        true,
        format!(
            "@{}.*:{}",
            regex_escape(user_prefix),
            regex_escape(server_name)
        ),
    )];
    let mut namespaces = Namespaces::new();
    namespaces.users = users;
    let mut registration: Registration = RegistrationInit {
        id: "causeway".into(),
        url: Some(url.into()),
        as_token: token(),
        hs_token: token(),
        sender_localpart: format!("{user_prefix}bot"),
        namespaces,
        rate_limited: Some(false),
        protocols: None,
    }
    .into();
    registration.receive_ephemeral = true;
    registration
}

/// The registration as YAML.
pub fn to_yaml(registration: &Registration) -> String {
    serde_norway::to_string(registration).expect("a registration always serialises")
}

/// Read and check a registration file.
pub fn load(path: &Path) -> Result<Registration, RegistrationError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| RegistrationError::Io {
        path: shown.clone(),
        source,
    })?;
    let registration: Registration =
        serde_norway::from_str(&text).map_err(|source| RegistrationError::Parse {
            path: shown.clone(),
            source,
        })?;
    for (field, value) in [
        ("as_token", &registration.as_token),
        ("hs_token", &registration.hs_token),
    ] {
        if value.is_empty() {
            return Err(RegistrationError::Empty { path: shown, field });
        }
    }
    Ok(registration)
}

/// `s` with regular expression metacharacters escaped.
fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_registrations_round_trip_through_yaml() {
        let reg = generate("example.org", "_xmpp_", "http://127.0.0.1:9993");
        let yaml = to_yaml(&reg);
        assert!(yaml.contains("rate_limited: false"), "{yaml}");
        assert!(yaml.contains(r"'@_xmpp_.*:example\.org'"), "{yaml}");
        let dir = std::env::temp_dir().join(format!("causeway-reg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("r.yaml");
        std::fs::write(&file, &yaml).unwrap();
        let back = load(&file).unwrap();
        assert_eq!(back.as_token, reg.as_token);
        assert_eq!(back.hs_token, reg.hs_token);
        assert_ne!(reg.as_token, reg.hs_token);
        assert_eq!(
            back.namespaces.users[0].regex,
            reg.namespaces.users[0].regex
        );
        assert!(back.namespaces.users[0].exclusive);
        std::fs::write(&file, "id: x\n").unwrap();
        assert!(matches!(load(&file), Err(RegistrationError::Parse { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
