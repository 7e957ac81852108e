//! The command line as DESIGN.md §6 fixes it: `--config`, `run`, `check-config`, `--help`.

use std::process::Command;

fn causeway(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_causeway"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn example() -> String {
    format!(
        "{}/config/causeway.example.toml",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[test]
fn check_config_accepts_the_example() {
    let out = causeway(&["check-config", "--config", &example()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration is valid"));
}

#[test]
fn check_config_lists_every_problem_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[access]\nallow = []\n[irc]\ndomain = \"irc.example.org\"\nsecret = \"\"\n[xmmp]\nport = 1\n").unwrap();
    let out = causeway(&["check-config", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for key in ["access.allow", "irc.secret", "xmmp: unknown section"] {
        assert!(stderr.contains(key), "{key} not reported:\n{stderr}");
    }
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let out = causeway(&["check-config", "--config", "/nonexistent/causeway.toml"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/causeway.toml"));
}

#[test]
fn help_explains_each_command() {
    let out = causeway(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for word in ["run", "check-config", "--config", "CAUSEWAY_"] {
        assert!(help.contains(word), "--help lacks {word}:\n{help}");
    }
    let out = causeway(&["run", "--help"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("SIGTERM"));
}

#[test]
fn run_without_config_says_what_is_missing() {
    let out = causeway(&["run"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config"));
}

#[test]
fn generate_registration_needs_the_appservice_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("personal.toml");
    std::fs::write(
        &path,
        "[access]\nallow = [\"example.org\"]\n[matrix]\ndomain = \"matrix.example.org\"\nsecret = \"s\"\n",
    )
    .unwrap();
    let out = causeway(&["check-config", "--config", path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "personal logins only is valid: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = causeway(&["generate-registration", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("runs no appservice") && stderr.contains("homeserver and server_name"),
        "{stderr}"
    );
    assert!(!dir.path().join("matrix-registration.yaml").exists());
}
