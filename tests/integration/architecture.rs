//! The architecture invariants of ARCHITECTURE.md, checked on the code: which crate may
//! depend on what (from `cargo metadata`, transitively), and which part of the root crate
//! may name what (from the sources, comments left out). Each test names the invariant it
//! guards; a failure lists every offending dependency or line.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The workspace's root.
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `cargo metadata` of the workspace, for this machine's platform.
fn metadata() -> Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let rustc = Command::new("rustc")
        .arg("-vV")
        .output()
        .expect("rustc -vV");
    let host = String::from_utf8_lossy(&rustc.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .expect("rustc -vV names the host");
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--offline", "--locked"])
        .args(["--filter-platform", &host])
        .current_dir(root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata is JSON")
}

/// The crates each workspace member depends on to build and run (not its tests), all the
/// way down, by name.
fn dependency_closures() -> HashMap<String, BTreeSet<String>> {
    let metadata = metadata();
    let names: HashMap<&str, &str> = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let nodes: HashMap<&str, &Value> = metadata["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["id"].as_str().unwrap(), n))
        .collect();
    // Normal and build dependencies; dev-dependencies serve only the tests.
    let built = |dep: &Value| {
        dep["dep_kinds"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kind"].is_null() || k["kind"] == "build")
    };
    let mut closures = HashMap::new();
    for member in metadata["workspace_members"].as_array().unwrap() {
        let member = member.as_str().unwrap();
        let (mut seen, mut todo) = (BTreeSet::new(), vec![member]);
        while let Some(id) = todo.pop() {
            for dep in nodes[id]["deps"].as_array().unwrap() {
                let pkg = dep["pkg"].as_str().unwrap();
                if built(dep) && seen.insert(pkg) {
                    todo.push(pkg);
                }
            }
        }
        let reached = seen.iter().map(|id| names[id].to_owned()).collect();
        closures.insert(names[member].to_owned(), reached);
    }
    closures
}

/// The crates that speak XMPP, hold SQL or load configuration: the root's business.
const ROOT_ONLY: &[&str] = &[
    "tokio-xmpp",
    "xmpp-parsers",
    "jid",
    "minidom",
    "xso",
    "quick-xml",
    "sqlx",
    "figment",
];

/// **Architecture Invariant:** bridges depend only on `bridges/api`; they never depend on
/// each other, and nothing XMPP, SQL or configuration-loading reaches them.
#[test]
fn bridges_depend_on_the_api_and_nothing_of_the_root() {
    let closures = dependency_closures();
    let bridges: Vec<&String> = closures
        .keys()
        .filter(|name| name.starts_with("causeway-"))
        .collect();
    assert!(
        bridges.len() >= 3,
        "expected the api and two bridges, found {bridges:?}"
    );
    let mut wrong = Vec::new();
    for bridge in bridges {
        for dep in &closures[bridge] {
            let other_bridge = dep.starts_with("causeway-") && dep != "causeway-bridge";
            let root_only = ROOT_ONLY
                .iter()
                .any(|r| dep == r || dep.starts_with(&format!("{r}-")));
            if other_bridge || root_only {
                wrong.push(format!("{bridge} depends on {dep}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// **Architecture Invariant:** `bridges/api` does no I/O: it declares no network, HTTP,
/// TLS or database crate, takes only tokio's channels (and, for the conformance suite, its
/// runtime and timers) and SHA-1 (a picture's hash), and its code opens no socket, file or
/// process.
#[test]
fn the_adapter_api_does_no_io() {
    let metadata = metadata();
    let api = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "causeway-bridge")
        .expect("the adapter API is a workspace member");
    let allowed_tokio = ["sync", "rt", "time", "macros"];
    let mut wrong = Vec::new();
    for dep in api["dependencies"].as_array().unwrap() {
        if !dep["kind"].is_null() {
            continue;
        }
        let name = dep["name"].as_str().unwrap();
        // sha1: a picture's hash (XEP-0153's), pure computation.
        if !["async-trait", "thiserror", "tokio", "sha1"].contains(&name) {
            wrong.push(format!("causeway-bridge depends on {name}"));
        }
        for feature in dep["features"].as_array().unwrap() {
            let feature = feature.as_str().unwrap();
            if name == "tokio" && !allowed_tokio.contains(&feature) {
                wrong.push(format!("causeway-bridge takes tokio's {feature}"));
            }
        }
    }
    let api_features = api["features"].as_object().unwrap();
    for enabled in api_features.values().flat_map(|f| f.as_array().unwrap()) {
        let enabled = enabled.as_str().unwrap();
        let allowed = enabled
            .strip_prefix("tokio/")
            .is_some_and(|f| allowed_tokio.contains(&f));
        if !allowed {
            wrong.push(format!("a causeway-bridge feature enables {enabled}"));
        }
    }
    let io = [
        "tokio::net",
        "tokio::fs",
        "tokio::io",
        "tokio::process",
        "std::net",
        "std::fs",
        "std::process",
    ];
    wrong.extend(naming("bridges/api", &[], &io));
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Every line of code (comments left out) of the `.rs` files below `dir`, with its place.
fn code_lines(dir: &Path) -> Vec<(PathBuf, usize, String)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for (n, line) in text.lines().enumerate() {
                    let code = line.split("//").next().unwrap_or("").trim();
                    if !code.is_empty() {
                        out.push((path.clone(), n + 1, code.to_owned()));
                    }
                }
            }
        }
    }
    out
}

/// The lines below `dir` (but not below any of `except`) that hold any of `names`.
fn naming(dir: &str, except: &[&str], names: &[&str]) -> Vec<String> {
    let base = root();
    let except: Vec<PathBuf> = except.iter().map(|e| base.join(e)).collect();
    code_lines(&base.join(dir))
        .into_iter()
        .filter(|(path, _, _)| !except.iter().any(|e| path.starts_with(e)))
        .filter(|(_, _, code)| names.iter().any(|n| code.contains(n)))
        .map(|(path, n, code)| {
            let path = path.strip_prefix(&base).unwrap_or(&path);
            format!("{}:{n}: {code}", path.display())
        })
        .collect()
}

/// **Architecture Invariant:** the gateway core is network-agnostic: `src/gateway` names
/// no bridge crate, and is handed the reloader rather than reaching up to it.
#[test]
fn the_core_names_no_bridge() {
    let wrong = naming(
        "src/gateway",
        &[],
        &["causeway_irc", "causeway_matrix", "crate::reload"],
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// **Architecture Invariant:** only `src/component` speaks XEP-0114 and touches the XML
/// stream, and it knows nothing of the core.
#[test]
fn only_the_component_touches_the_stream() {
    let mut wrong = naming(
        "src",
        &["src/component"],
        &["quick_xml", "component::codec"],
    );
    wrong.extend(naming("src/component", &[], &["crate::gateway"]));
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// **Architecture Invariant:** only `src/store` writes SQL, and the store knows no bridge.
#[test]
fn only_the_store_writes_sql() {
    let sql = [
        "sqlx::",
        "SELECT ",
        "INSERT INTO",
        "UPDATE ",
        "DELETE FROM",
        "CREATE TABLE",
    ];
    let mut wrong = naming("src", &["src/store"], &sql);
    wrong.extend(naming("bridges", &[], &sql));
    wrong.extend(naming(
        "src/store",
        &[],
        &["causeway_irc", "causeway_matrix"],
    ));
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// **Architecture Invariant:** only `src/config` loads configuration (figment); bridges
/// own their settings types and are handed them.
#[test]
fn only_the_config_loads_configuration() {
    let mut wrong = naming("src", &["src/config.rs", "src/config"], &["figment"]);
    wrong.extend(naming(
        "bridges",
        &[],
        &["figment", "tokio_xmpp", "xmpp_parsers"],
    ));
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
