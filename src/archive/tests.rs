//! The archiver against a real SQLite file whose write lock another connection holds: what
//! it is handed is archived once the database takes writes again, in order, whether it
//! waited in memory or in spill files, and across a shutdown.

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::store::ArchiveQuery;

const ROOM: &str = "#spill%irc.example.net@irc.example.org";
const USER: &str = "alice@example.org";

fn message(i: usize) -> ArchivedMessage {
    ArchivedMessage {
        stanza_id: format!("id-{i:06}"),
        user: USER.into(),
        room: ROOM.into(),
        sender: "bob".into(),
        body: format!("line {i}"),
        origin_id: None,
        at_ms: 1_700_000_000_000 + i as i64,
    }
}

struct Scene {
    _dir: tempfile::TempDir,
    /// The archiver's store: a locked write fails after 100 ms.
    store: Store,
    /// Another connection, the one that holds the lock.
    locker: Store,
    limits: Limits,
}

async fn scene(queue: usize, held: usize) -> Scene {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("gateway.db").display());
    let store = Store::open_waiting(&url, 2, Duration::from_millis(100))
        .await
        .unwrap();
    let locker = Store::open(&url, 1).await.unwrap();
    let limits = Limits {
        queue,
        held,
        grace: Duration::from_millis(300),
        spill_dir: dir.path().join("spill"),
    };
    Scene {
        _dir: dir,
        store,
        locker,
        limits,
    }
}

/// The bodies archived, in archive order.
async fn archived(store: &Store) -> Vec<String> {
    let page = store
        .archive_page(&ArchiveQuery {
            user: USER.into(),
            room: ROOM.into(),
            max: 100_000,
            ..Default::default()
        })
        .await
        .unwrap();
    page.messages.into_iter().map(|m| m.body).collect()
}

fn lines(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("line {i}")).collect()
}

fn files(dir: &Path, prefix: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(prefix))
        .collect();
    names.sort();
    names
}

/// Record `from..to` on a side task (recording waits while the archiver is full).
fn record(archiver: &Archiver, from: usize, to: usize) -> tokio::task::JoinHandle<()> {
    let archiver = archiver.clone();
    tokio::spawn(async move {
        for i in from..to {
            archiver.record(message(i)).await;
        }
    })
}

/// Wait until a flush says all is archived (the database takes writes again).
async fn recovered(archiver: &Archiver) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !archiver.flush().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the archive recovers"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_locked_database_delays_the_archive_and_loses_nothing() {
    let s = scene(100, 10_000).await;
    let lock = s.locker.hold_write_lock().await.unwrap();
    let (archiver, task) = Archiver::start(s.store.clone(), s.limits.clone());
    archiver.record(message(0)).await;
    let recording = record(&archiver, 1, 3000);
    assert!(
        !archiver.flush().await,
        "a flush says so when the database fails, rather than wait for it"
    );
    recording.await.unwrap();
    assert!(
        archived(&s.store).await.is_empty(),
        "nothing got past the lock"
    );
    assert!(
        files(&s.limits.spill_dir, "").is_empty(),
        "memory held it all"
    );

    drop(lock);
    recovered(&archiver).await;
    assert_eq!(archived(&s.store).await, lines(3000));
    drop(archiver);
    task.await.unwrap();
}

#[tokio::test]
async fn past_what_memory_holds_messages_are_spilled_then_archived_in_order() {
    let s = scene(100, 300).await;
    let lock = s.locker.hold_write_lock().await.unwrap();
    let (archiver, task) = Archiver::start(s.store.clone(), s.limits.clone());
    // 1000 messages cannot all wait in 100 queued and 300 held: they are taken only as
    // spills make room, so recording them all ends only after spills.
    tokio::time::timeout(Duration::from_secs(60), record(&archiver, 0, 1000))
        .await
        .expect("spilling makes room for every message")
        .unwrap();
    let spills = files(&s.limits.spill_dir, "archive-");
    assert!(spills.len() >= 2, "spill files while locked: {spills:?}");
    assert!(!archiver.flush().await);

    drop(lock);
    recovered(&archiver).await;
    assert_eq!(
        archived(&s.store).await,
        lines(1000),
        "spilled and held messages archived once each, in the order they came"
    );
    assert!(
        files(&s.limits.spill_dir, "archive-").is_empty(),
        "archived spill files are deleted"
    );
    drop(archiver);
    task.await.unwrap();
}

#[tokio::test]
async fn what_a_shutdown_leaves_is_spilled_and_archived_at_the_next_start() {
    let s = scene(100, 10_000).await;
    let lock = s.locker.hold_write_lock().await.unwrap();
    let (archiver, task) = Archiver::start(s.store.clone(), s.limits.clone());
    record(&archiver, 0, 50).await.unwrap();
    drop(archiver);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the shutdown waits the grace, not for the database")
        .unwrap();
    assert_eq!(files(&s.limits.spill_dir, "archive-").len(), 1);
    assert!(archived(&s.store).await.is_empty());

    drop(lock);
    let (archiver, task) = Archiver::start(s.store.clone(), s.limits.clone());
    archiver.record(message(50)).await;
    assert!(archiver.flush().await);
    assert_eq!(
        archived(&s.store).await,
        lines(51),
        "the spill first, then what came after the start"
    );
    assert!(files(&s.limits.spill_dir, "archive-").is_empty());
    drop(archiver);
    task.await.unwrap();
}

#[tokio::test]
async fn an_unreadable_spill_file_is_set_aside_and_the_rest_archived() {
    let s = scene(100, 10_000).await;
    std::fs::create_dir_all(&s.limits.spill_dir).unwrap();
    let mut spill = spill::Spill::new(s.limits.spill_dir.clone());
    let good = spill.write(&[message(0), message(1)]).await.unwrap();
    let bad = s
        .limits
        .spill_dir
        .join("archive-000000000000000-000000.jsonl");
    std::fs::write(&bad, b"{\"stanza_id\": \"cut short").unwrap();

    let (archiver, task) = Archiver::start(s.store.clone(), s.limits.clone());
    assert!(archiver.flush().await);
    assert_eq!(archived(&s.store).await, lines(2));
    assert!(!good.exists());
    assert_eq!(
        files(&s.limits.spill_dir, ""),
        ["archive-000000000000000-000000.jsonl.unreadable"],
        "kept for an administrator, never replayed again"
    );
    drop(archiver);
    task.await.unwrap();
}
