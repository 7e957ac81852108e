//! What one matrix-sdk client holds: the Rust heap that each further personal login's
//! `Client` keeps with nothing to do — a session restored (no homeserver asked), its
//! SQLite stores open with the gateway's settings (`bridges/matrix/src/personal/session.rs`:
//! two connections, 500 kB page caches, an encryption key), its Olm machine loaded; no
//! rooms, no sync. The floor under what a login costs the gateway, whatever the gateway
//! does around it. Run with `cargo bench --bench matrix_client`; prints the numbers,
//! asserts nothing.
//!
//! Counted: jemalloc's allocated bytes (the binary's allocator, as in the gateway). Not
//! counted: SQLite's own allocations (C, through the system allocator) and what the
//! allocator keeps beyond them — so a login's real cost is higher than this.

use std::time::Duration;

use tikv_jemalloc_ctl::{epoch, stats};

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const CLIENTS: usize = 30;

/// The bytes allocated now.
fn allocated() -> usize {
    epoch::advance().expect("jemalloc statistics refresh");
    stats::allocated::read().expect("jemalloc statistics")
}

async fn client(dir: &std::path::Path, n: usize, http: &reqwest::Client) -> matrix_sdk::Client {
    let config = matrix_sdk::SqliteStoreConfig::new(dir.join(format!("login{n}")))
        .pool_max_size(2)
        .cache_size(500_000)
        .journal_size_limit(2_000_000)
        .key(Some(&[7; 32]));
    let sdk = matrix_sdk::Client::builder()
        .homeserver_url("http://127.0.0.1:9")
        .http_client(http.clone())
        .sqlite_store_with_config_and_cache_path(config, None::<&std::path::Path>)
        .build()
        .await
        .expect("the client builds");
    let session = matrix_sdk::authentication::matrix::MatrixSession {
        meta: matrix_sdk::SessionMeta {
            user_id: format!("@login{n}:example.org").try_into().unwrap(),
            device_id: format!("DEVICE{n}").into(),
        },
        tokens: matrix_sdk::SessionTokens {
            access_token: "token".into(),
            refresh_token: None,
        },
    };
    sdk.restore_session(session)
        .await
        .expect("the session restores");
    // The Olm machine and its account are loaded.
    sdk.encryption()
        .ed25519_key()
        .await
        .expect("an identity key");
    sdk
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let none = allocated();
    let mut clients = Vec::new();
    let mut first = 0;
    for n in 0..CLIENTS {
        clients.push(client(dir.path(), n, &http).await);
        if n == 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            first = allocated();
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let all = allocated();
    let kib = |bytes: usize| bytes as f64 / 1024.0;
    println!(
        "matrix-sdk clients, Rust heap: none {:.0} KiB, 1 client {:.0} KiB, {CLIENTS} clients \
         {:.0} KiB; each client after the first {:.0} KiB",
        kib(none),
        kib(first),
        kib(all),
        kib(all - first) / (CLIENTS - 1) as f64
    );
}
