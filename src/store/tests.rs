//! One suite, run on SQLite always and on PostgreSQL when `CAUSEWAY_TEST_POSTGRES_URL` names
//! a server (the test scripts start one; with `CAUSEWAY_REQUIRE_SERVERS=1`, as in CI, its
//! absence fails the test instead of skipping it).

use super::*;

async fn suite(store: &Store) {
    // Users appear on first sight and keep their id.
    let alice = store.ensure_user("alice@example.org").await.unwrap();
    assert_eq!(store.ensure_user("alice@example.org").await.unwrap(), alice);
    let bob = store.ensure_user("bob@example.org").await.unwrap();
    assert_ne!(alice, bob);

    // Settings start empty, round-trip, and stay per user.
    assert_eq!(
        store.user_settings("alice@example.org").await.unwrap(),
        Some(UserSettings::default())
    );
    assert_eq!(
        store.user_settings("nobody@example.org").await.unwrap(),
        None
    );
    let settings = UserSettings {
        record_history: Some(false),
        persistent: Some(true),
        default_nick: Some("ally".into()),
    };
    store
        .set_user_settings("alice@example.org", &settings)
        .await
        .unwrap();
    assert_eq!(
        store.user_settings("alice@example.org").await.unwrap(),
        Some(settings)
    );
    assert_eq!(
        store.user_settings("bob@example.org").await.unwrap(),
        Some(UserSettings::default())
    );
    // Setting creates the user when needed.
    store
        .set_user_settings("carol@example.org", &UserSettings::default())
        .await
        .unwrap();
    assert!(store
        .user_settings("carol@example.org")
        .await
        .unwrap()
        .is_some());

    // Per-server IRC settings, with the SASL password in its own column, updated in place.
    assert_eq!(
        store
            .irc_server_settings("alice@example.org", "irc.example.net")
            .await
            .unwrap(),
        None
    );
    let mut irc = IrcServerSettings {
        nick: Some("alice".into()),
        realname: Some("Alice Liddell".into()),
        after_connect: vec!["MODE alice +i".into()],
        sasl_password: Some("pa'ss; DROP TABLE users".into()),
        ..Default::default()
    };
    store
        .set_irc_server_settings("alice@example.org", "irc.example.net", &irc)
        .await
        .unwrap();
    assert_eq!(
        store
            .irc_server_settings("alice@example.org", "irc.example.net")
            .await
            .unwrap(),
        Some(irc.clone())
    );
    irc.sasl_password = None;
    irc.nick = Some("alice2".into());
    store
        .set_irc_server_settings("alice@example.org", "irc.example.net", &irc)
        .await
        .unwrap();
    assert_eq!(
        store
            .irc_server_settings("alice@example.org", "irc.example.net")
            .await
            .unwrap(),
        Some(irc)
    );
    assert_eq!(
        store
            .irc_server_settings("bob@example.org", "irc.example.net")
            .await
            .unwrap(),
        None
    );

    // Mappings keep the remote case and are found by the folded localpart.
    let room_id = "!fT7EpjDY8j90RmXEuty6OQmGqSwr1hbHTmAWyC1hYas";
    let folded = room_id.to_lowercase();
    let room = store
        .map_remote(
            EntityKind::Room,
            NetworkKind::Matrix,
            "matrix.test",
            room_id,
            &folded,
        )
        .await
        .unwrap();
    assert_eq!(room.remote, room_id);
    let found = store
        .lookup_localpart(EntityKind::Room, NetworkKind::Matrix, &folded)
        .await
        .unwrap();
    assert_eq!(found, Some(room.clone()));
    // Same remote again: same row. Same localpart on another network: independent.
    let again = store
        .map_remote(
            EntityKind::Room,
            NetworkKind::Matrix,
            "matrix.test",
            room_id,
            &folded,
        )
        .await
        .unwrap();
    assert_eq!(again, room);
    assert_eq!(
        store
            .lookup_localpart(EntityKind::Room, NetworkKind::Irc, &folded)
            .await
            .unwrap(),
        None
    );
    // Rooms and users are separate namespaces.
    assert_eq!(
        store
            .lookup_localpart(EntityKind::User, NetworkKind::Matrix, &folded)
            .await
            .unwrap(),
        None
    );
    let user = store
        .map_remote(
            EntityKind::User,
            NetworkKind::Matrix,
            "matrix.test",
            "@Alice:matrix.test",
            "alice%matrix.test",
        )
        .await
        .unwrap();
    assert_eq!(user.remote, "@Alice:matrix.test");
    assert_eq!(
        store
            .lookup_localpart(EntityKind::User, NetworkKind::Matrix, "alice%matrix.test")
            .await
            .unwrap(),
        Some(user)
    );
}

#[tokio::test]
async fn sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested-is-not-needed.db");
    let url = format!("sqlite://{}", path.display());
    let store = Store::open(&url, 4).await.unwrap();
    assert!(path.exists(), "the database file is created when missing");
    assert_eq!(store.backend(), Backend::Sqlite);
    suite(&store).await;
    let mode: String = sqlx::query("PRAGMA journal_mode")
        .fetch_one(&store.pool)
        .await
        .unwrap()
        .try_get(0)
        .unwrap();
    assert_eq!(mode, "wal");
    store.close().await;
    // Reopening runs no migration twice and keeps the data.
    let store = Store::open(&url, 1).await.unwrap();
    assert!(store
        .user_settings("alice@example.org")
        .await
        .unwrap()
        .is_some());
    store.close().await;
}

#[tokio::test]
async fn postgres_store() {
    let Ok(admin_url) = std::env::var("CAUSEWAY_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var("CAUSEWAY_REQUIRE_SERVERS").as_deref() != Ok("1"),
            "CAUSEWAY_TEST_POSTGRES_URL is unset but CAUSEWAY_REQUIRE_SERVERS=1"
        );
        eprintln!("postgres_store: CAUSEWAY_TEST_POSTGRES_URL unset, PostgreSQL suite not run");
        return;
    };
    sqlx::any::install_default_drivers();
    let db = format!("causeway_store_{}_{}", std::process::id(), unix_now());
    let admin = AnyPool::connect(&admin_url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
        .execute(&admin)
        .await
        .unwrap();
    let (base, _) = admin_url
        .rsplit_once('/')
        .expect("postgres URL with a database name");
    let store = Store::open(&format!("{base}/{db}"), 4).await.unwrap();
    assert_eq!(store.backend(), Backend::Postgres);
    suite(&store).await;
    store.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {db}")))
        .execute(&admin)
        .await
        .unwrap();
}

#[tokio::test]
async fn unsupported_scheme_is_refused() {
    let err = Store::open("mysql://localhost/x", 1).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Scheme(ref s) if s == "mysql"),
        "{err}"
    );
}
