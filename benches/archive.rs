//! Archive throughput: how many messages a second the archiver writes, batched in
//! transactions, into SQLite (always) and PostgreSQL (when CAUSEWAY_TEST_POSTGRES_URL names
//! a server). Run with `cargo bench --bench archive`; prints the numbers, asserts nothing.
//!
//! The target (issue 4): at least 5,000 msg/s, so that the archive is never what limits a
//! gateway (biboumi with history on manages ~60-75 msg/s on this class of machine).

use std::time::Instant;

use causeway::archive::{Archiver, Limits};
use causeway::store::{ArchivedMessage, Store};

const MESSAGES: usize = 50_000;
const ROOMS: usize = 50;

fn message(i: usize) -> ArchivedMessage {
    ArchivedMessage {
        stanza_id: format!("{i:032x}"),
        user: format!("user{}@example.org", i % ROOMS),
        room: format!("#room{}%irc.example.net@irc.example.org", i % ROOMS),
        sender: format!("nick{}", i % 7),
        body: format!("message number {i} with some ordinary chat text in it"),
        origin_id: None,
        at_ms: 1_700_000_000_000 + i as i64,
    }
}

async fn measure(label: &str, url: &str) {
    let store = Store::open(url, 4).await.expect("database opens");
    let spill = tempfile::tempdir().expect("a spill directory");
    let (archiver, task) = Archiver::start(store.clone(), Limits::new(spill.path().into()));
    let start = Instant::now();
    for i in 0..MESSAGES {
        archiver.record(message(i)).await;
    }
    archiver.flush().await;
    let elapsed = start.elapsed();
    drop(archiver);
    task.await.expect("archiver ends");
    let rate = MESSAGES as f64 / elapsed.as_secs_f64();
    println!(
        "archive {label:<10} {MESSAGES} messages in {:>7.3} s = {rate:>9.0} msg/s",
        elapsed.as_secs_f64()
    );
    store.close().await;
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = format!("sqlite://{}", dir.path().join("bench.db").display());
    measure("sqlite", &sqlite).await;
    match std::env::var("CAUSEWAY_TEST_POSTGRES_URL") {
        Ok(admin) => {
            sqlx::any::install_default_drivers();
            let db = format!("causeway_bench_{}", std::process::id());
            let pool = sqlx::AnyPool::connect(&admin)
                .await
                .expect("postgres reachable");
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
                .execute(&pool)
                .await
                .expect("create database");
            let (base, _) = admin.rsplit_once('/').expect("a database in the URL");
            measure("postgres", &format!("{base}/{db}")).await;
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {db}")))
                .execute(&pool)
                .await
                .expect("drop database");
        }
        Err(_) => println!("archive postgres   (skipped: set CAUSEWAY_TEST_POSTGRES_URL)"),
    }
}
