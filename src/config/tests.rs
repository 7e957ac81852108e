use super::*;

use std::sync::Mutex;

/// Config loading reads the process environment; tests that set variables hold this lock,
/// and every test parses through [`parse`] or [`load`], which hold it too.
static ENV_LOCK: Mutex<()> = Mutex::new(());

fn parse(toml: &str) -> Result<Config, ConfigError> {
    let _guard = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    Config::from_toml_str(toml)
}

fn load(path: &Path) -> Result<Config, ConfigError> {
    let _guard = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    Config::load(path)
}

const MINIMAL: &str = r#"
[access]
allow = ["example.org"]
[irc]
domain = "irc.example.org"
secret = "s3cret"
"#;

#[test]
fn example_config_parses_and_checks() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/causeway.example.toml");
    let config = load(&path).expect("the example config must be valid");
    assert_eq!(config.xmpp.port, 5347);
    assert_eq!(config.database.url.expose(), "sqlite://causeway.db");
    let irc = config.irc.as_ref().unwrap();
    assert_eq!(irc.servers["irc.libera.chat"].port, 6697);
    let matrix = config.matrix.as_ref().unwrap();
    assert_eq!(matrix.user_prefix, "_xmpp_");
    assert_eq!(
        matrix.appservice().map(|keys| keys.server_name),
        Some("example.org")
    );
    assert!(matrix.personal);
    assert_eq!(matrix.store_dir, Path::new("matrix"));
    assert_eq!(matrix.max_logins, 1000);
    let domains: Vec<_> = config
        .component_domains()
        .into_iter()
        .map(|d| d.domain)
        .collect();
    assert_eq!(domains, ["irc.example.org", "matrix.example.org"]);
}

#[test]
fn defaults_fill_what_is_left_out() {
    let config = parse(MINIMAL).unwrap();
    assert_eq!(config.xmpp.host, "127.0.0.1");
    assert_eq!(config.xmpp.queue_size, 10_000);
    assert_eq!(config.database.url.expose(), "sqlite://causeway.db");
    assert_eq!(config.history.spill_dir, Path::new("archive-spill"));
    assert_eq!(
        (
            config.access.messages_per_minute,
            config.access.message_burst
        ),
        (120, 30)
    );
    assert!(config.matrix.is_none());
    assert!(config.irc.unwrap().fixed_server.is_none());
}

#[test]
fn every_problem_is_reported_at_once_with_its_key() {
    let toml = r#"
[xmpp]
port = 0
[database]
url = "mysql://localhost/x"
[access]
allow = []
message_burst = 0
[history]
spill_dir = ""
[irc]
domain = "irc example"
secret = ""
max_channels_per_user = 0
[irc.servers."irc.libera.chat"]
tsl = true
[matrix]
domain = "irc example"
secret = "x"
homeserver = "localhost:8008"
server_name = "example.org"
listen = "nowhere"
media_url = "ftp://files.example.org"
media_listen = "nowhere"
media_max_size = 0
[telegram]
token = "x"
"#;
    let Err(ConfigError::Invalid(problems)) = parse(toml) else {
        panic!("expected problems");
    };
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    for key in [
        "xmpp.port",
        "database.url",
        "access.allow",
        "history.spill_dir",
        "access.message_burst",
        "irc.max_channels_per_user",
        "irc.domain",
        "irc.secret",
        "irc.servers.irc.libera.chat.tsl",
        "matrix.domain",
        "matrix.homeserver",
        "matrix.listen",
        "matrix.media_url",
        "matrix.media_listen",
        "matrix.media_max_size",
        "telegram",
    ] {
        assert!(
            keys.contains(&key),
            "no problem reported for {key}: {problems:#?}"
        );
    }
    let text = ConfigError::Invalid(problems).to_string();
    assert!(text.contains("irc.secret: is missing"), "{text}");
    assert!(text.contains("telegram: unknown section"), "{text}");
}

#[test]
fn missing_required_key_names_it() {
    let err = parse("[access]\nallow=[\"a.org\"]\n[irc]\ndomain = \"irc.a.org\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("secret"), "{err}");
}

#[test]
fn bad_allow_entry_is_reported() {
    let toml = MINIMAL.replace(
        r#"allow = ["example.org"]"#,
        r#"allow = ["example.org", "a@b@c"]"#,
    );
    let Err(ConfigError::Invalid(problems)) = parse(&toml) else {
        panic!("expected problems");
    };
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].key, "access.allow[1]");
}

#[test]
fn no_network_at_all_is_a_problem() {
    let Err(ConfigError::Invalid(problems)) = parse("[access]\nallow = [\"example.org\"]\n") else {
        panic!("expected problems");
    };
    assert_eq!(problems[0].key, "irc");
}

#[test]
fn secrets_never_show_in_debug() {
    let toml = MINIMAL.replace(
        "[irc]",
        "[database]\nurl = \"postgres://u:hunter2@db/x\"\n[irc]",
    );
    let config = parse(&toml).unwrap();
    let debug = format!("{config:?}");
    assert!(!debug.contains("s3cret"), "{debug}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(debug.contains("***"));
}

#[test]
fn environment_overrides_the_file() {
    let config = {
        let _guard = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        std::env::set_var("CAUSEWAY_XMPP__PORT", "5999");
        std::env::set_var("CAUSEWAY_IRC__SECRET", "from-env");
        let config = Config::from_toml_str(MINIMAL);
        std::env::remove_var("CAUSEWAY_XMPP__PORT");
        std::env::remove_var("CAUSEWAY_IRC__SECRET");
        config
    };
    let config = config.unwrap();
    assert_eq!(config.xmpp.port, 5999);
    assert_eq!(config.irc.as_ref().unwrap().secret.expose(), "from-env");
}

#[test]
fn other_causeway_variables_are_not_configuration() {
    let config = {
        let _guard = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        std::env::set_var("CAUSEWAY_SOMETHING_ELSE", "1");
        let config = Config::from_toml_str(MINIMAL);
        std::env::remove_var("CAUSEWAY_SOMETHING_ELSE");
        config
    };
    config.expect("a CAUSEWAY_ variable without __ is ignored");
}

#[test]
fn irc_server_settings_are_checked_with_their_keys_and_redacted() {
    let toml = MINIMAL.replace(
        "[irc]",
        "[irc.servers.\"irc.example.net\"]\nport = 0\nflood_burst = 0\nping_timeout_secs = 0\npassword = \"pass-w0rd\"\n[irc]",
    );
    let Err(ConfigError::Invalid(problems)) = parse(&toml) else {
        panic!("expected problems");
    };
    let text = ConfigError::Invalid(problems).to_string();
    for line in [
        "irc.servers.\"irc.example.net\".port: must be a port number from 1 to 65535",
        "irc.servers.\"irc.example.net\".flood_per_second: flood control needs a burst and a rate of at least 1",
        "irc.servers.\"irc.example.net\".ping_interval_secs: ping interval and timeout must be at least 1 second",
    ] {
        assert!(text.contains(line), "{line} missing from {text}");
    }
    let toml = MINIMAL.replace(
        "[irc]",
        "[irc.servers.\"irc.example.net\"]\npassword = \"pass-w0rd\"\nping_interval_secs = 5\n[irc]",
    );
    let config = parse(&toml).unwrap();
    let server = &config.irc.as_ref().unwrap().servers["irc.example.net"];
    assert_eq!(server.password.as_deref(), Some("pass-w0rd"));
    assert_eq!(server.ping_interval_secs, 5);
    assert_eq!(server.ping_timeout_secs, 90);
    let debug = format!("{config:?}");
    assert!(!debug.contains("pass-w0rd"), "{debug}");
}

const MATRIX_ONLY: &str = r#"
[access]
allow = ["example.org"]
[matrix]
domain = "matrix.example.org"
secret = "s3cret"
"#;

#[test]
fn matrix_with_domain_and_secret_runs_personal_logins_only() {
    let config = parse(MATRIX_ONLY).unwrap();
    let matrix = config.matrix.unwrap();
    assert_eq!(matrix.appservice(), None);
    assert!(matrix.personal);
    assert_eq!(matrix.store_dir, Path::new("matrix"));
    assert_eq!(matrix.max_logins, 1000);
}

#[test]
fn matrix_appservice_keys_come_together() {
    let problems_of = |extra: &str| match parse(&format!("{MATRIX_ONLY}{extra}")) {
        Err(ConfigError::Invalid(problems)) => ConfigError::Invalid(problems).to_string(),
        Err(e) => panic!("{e}"),
        Ok(_) => String::new(),
    };
    let text = problems_of("homeserver = \"http://127.0.0.1:8008\"\n");
    assert!(
        text.contains("matrix.server_name: is missing: the appservice (matrix.homeserver is set)"),
        "{text}"
    );
    let text = problems_of("server_name = \"example.org\"\n");
    assert!(text.contains("matrix.homeserver: is missing"), "{text}");
    let both = "homeserver = \"http://127.0.0.1:8008\"\nserver_name = \"example.org\"\n";
    assert_eq!(problems_of(both), "");
    let config = parse(&format!("{MATRIX_ONLY}{both}personal = false\n")).unwrap();
    let matrix = config.matrix.unwrap();
    assert_eq!(
        matrix.appservice().map(|keys| keys.homeserver),
        Some("http://127.0.0.1:8008")
    );
    assert!(!matrix.personal);
}

#[test]
fn matrix_with_nothing_to_run_is_a_problem() {
    let toml = format!("{MATRIX_ONLY}personal = false\n");
    let Err(ConfigError::Invalid(problems)) = parse(&toml) else {
        panic!("expected problems");
    };
    let text = ConfigError::Invalid(problems).to_string();
    assert!(text.contains("matrix: nothing to run"), "{text}");
}

#[test]
fn matrix_personal_limits_are_checked() {
    let toml = format!("{MATRIX_ONLY}store_dir = \"\"\nmax_logins = 0\n");
    let Err(ConfigError::Invalid(problems)) = parse(&toml) else {
        panic!("expected problems");
    };
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["matrix.store_dir", "matrix.max_logins"]);
    let config = parse(&format!(
        "{MATRIX_ONLY}store_dir = \"/var/lib/causeway/matrix\"\nmax_logins = 5\n"
    ))
    .unwrap();
    let matrix = config.matrix.unwrap();
    assert_eq!(matrix.store_dir, Path::new("/var/lib/causeway/matrix"));
    assert_eq!(matrix.max_logins, 5);
}
