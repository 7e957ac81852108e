//! One suite, run on SQLite always and on PostgreSQL when `CAUSEWAY_TEST_POSTGRES_URL` names
//! a server (the test scripts start one; with `CAUSEWAY_REQUIRE_SERVERS=1`, as in CI, its
//! absence fails the test instead of skipping it).

use super::*;

async fn suite(store: &Store) {
    // An install secret is made once: asked again (also at once), it is the same.
    let (first, second) = tokio::join!(
        store.install_secret("occupant-id"),
        store.install_secret("occupant-id")
    );
    let secret = first.unwrap();
    assert_eq!(secret.len(), 64);
    assert_eq!(second.unwrap(), secret);
    assert_ne!(store.install_secret("another").await.unwrap(), secret);

    // What was put into an account is put there once, per user, kind and target.
    let alice_jid = "alice@example.org";
    assert!(store
        .record_push(alice_jid, "bookmark", "#r@gw")
        .await
        .unwrap());
    assert!(!store
        .record_push(alice_jid, "bookmark", "#r@gw")
        .await
        .unwrap());
    assert!(store
        .record_push(alice_jid, "contact", "#r@gw")
        .await
        .unwrap());
    assert!(store
        .record_push("bob@example.org", "bookmark", "#r@gw")
        .await
        .unwrap());
    let mut pushed = store.forget_pushes(alice_jid).await.unwrap();
    pushed.sort();
    assert_eq!(
        pushed,
        [
            ("bookmark".to_owned(), "#r@gw".to_owned()),
            ("contact".to_owned(), "#r@gw".to_owned())
        ]
    );
    assert!(store.forget_pushes(alice_jid).await.unwrap().is_empty());
    assert!(store
        .record_push(alice_jid, "bookmark", "#r@gw")
        .await
        .unwrap());

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

    // Channel settings inherit until set; joined channels are remembered for a restart.
    let chan = store
        .channel_settings("alice@example.org", "irc.example.net", "#Rust")
        .await
        .unwrap();
    assert_eq!(chan, ChannelSettings::default());
    let persistent = ChannelSettings {
        persistent: Some(true),
        record: Some(false),
        encoding: Some("koi8-r".into()),
    };
    store
        .set_channel_settings(
            "alice@example.org",
            "irc.example.net",
            "#Rust",
            persistent.clone(),
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .channel_settings("alice@example.org", "IRC.example.net", "#rust")
            .await
            .unwrap(),
        persistent
    );
    store
        .mark_joined(
            "alice@example.org",
            "irc.example.net",
            "#rust",
            "alice",
            true,
        )
        .await
        .unwrap();
    store
        .mark_joined("bob@example.org", "irc.example.net", "#go", "bob", true)
        .await
        .unwrap();
    store
        .mark_left("bob@example.org", "irc.example.net", "#go")
        .await
        .unwrap();
    let joined = store.joined_channels().await.unwrap();
    assert_eq!(joined.len(), 1);
    assert_eq!(
        (joined[0].channel.as_str(), joined[0].nick.as_str()),
        ("#rust", "alice")
    );
    // Joining again keeps the settings.
    assert_eq!(
        store
            .channel_settings("alice@example.org", "irc.example.net", "#rust")
            .await
            .unwrap(),
        persistent
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

    // A Matrix login's renewed session is kept only while it is still the user's login.
    let login = MatrixLogin {
        user: "carol@example.org".into(),
        account: "@carol:matrix.test".into(),
        session: "first".into(),
        store_key: "key1".into(),
    };
    store.save_matrix_login(&login).await.unwrap();
    let renewed = MatrixLogin {
        session: "renewed".into(),
        ..login.clone()
    };
    assert!(store.renew_matrix_login(&renewed).await.unwrap());
    assert_eq!(
        store.matrix_logins().await.unwrap(),
        std::slice::from_ref(&renewed)
    );
    let replaced = MatrixLogin {
        session: "of the login before".into(),
        store_key: "key0".into(),
        ..login.clone()
    };
    assert!(!store.renew_matrix_login(&replaced).await.unwrap());
    store.forget_matrix_login(&login.user).await.unwrap();
    assert!(!store.renew_matrix_login(&renewed).await.unwrap());
    assert!(store.matrix_logins().await.unwrap().is_empty());
}

async fn archive_suite(store: &Store) {
    let room = "#rust%irc.example.net@irc.gw";
    let message = |i: i64, user: &str, room: &str| ArchivedMessage {
        stanza_id: format!("{user}-{room}-{i}"),
        user: user.into(),
        room: room.into(),
        sender: if i % 3 == 0 {
            "bob".into()
        } else {
            "carol".into()
        },
        body: format!("message {i}"),
        origin_id: (i == 7).then(|| "origin-7".into()),
        at_ms: 1_000_000 + i * 1000,
    };
    let mut batch: Vec<ArchivedMessage> = (0..250)
        .map(|i| message(i, "alice@example.org", room))
        .collect();
    batch.extend((0..10).map(|i| message(i, "bob@example.org", room)));
    batch.extend((0..10).map(|i| message(i, "alice@example.org", "#other%irc.example.net@irc.gw")));
    store.archive(&batch).await.unwrap();

    let base = ArchiveQuery {
        user: "alice@example.org".into(),
        room: room.into(),
        max: 100,
        ..Default::default()
    };
    // Forward paging from the start.
    let first = store.archive_page(&base).await.unwrap();
    assert_eq!(
        (first.messages.len(), first.complete, first.count),
        (100, false, 250)
    );
    assert_eq!(first.messages[0].body, "message 0");
    assert_eq!(first.messages[7].origin_id.as_deref(), Some("origin-7"));
    let after = ArchiveQuery {
        after: Some(first.messages[99].stanza_id.clone()),
        ..base.clone()
    };
    let second = store.archive_page(&after).await.unwrap();
    assert_eq!(second.messages[0].body, "message 100");
    let third = store
        .archive_page(&ArchiveQuery {
            after: Some(second.messages[99].stanza_id.clone()),
            ..base.clone()
        })
        .await
        .unwrap();
    assert_eq!((third.messages.len(), third.complete), (50, true));
    // The newest page, and backwards from it.
    let newest = store
        .archive_page(&ArchiveQuery {
            newest: true,
            max: 20,
            ..base.clone()
        })
        .await
        .unwrap();
    assert_eq!(newest.messages.first().unwrap().body, "message 230");
    assert_eq!(newest.messages.last().unwrap().body, "message 249");
    let before = ArchiveQuery {
        before: Some(newest.messages[0].stanza_id.clone()),
        max: 20,
        ..base.clone()
    };
    let older = store.archive_page(&before).await.unwrap();
    assert_eq!(
        (
            older.messages[0].body.as_str(),
            older.messages[19].body.as_str()
        ),
        ("message 210", "message 229")
    );
    // Filters: time window and sender.
    let window = ArchiveQuery {
        start_ms: Some(1_010_000),
        end_ms: Some(1_019_000),
        ..base.clone()
    };
    let window = store.archive_page(&window).await.unwrap();
    assert_eq!((window.count, window.complete), (10, true));
    let from_bob = store
        .archive_page(&ArchiveQuery {
            with_nick: Some("bob".into()),
            max: 1000,
            ..base.clone()
        })
        .await
        .unwrap();
    assert_eq!(from_bob.count, 84);
    assert!(from_bob.messages.iter().all(|m| m.sender == "bob"));
    // Nobody sees another user's archive.
    let bobs = store
        .archive_page(&ArchiveQuery {
            user: "bob@example.org".into(),
            ..base.clone()
        })
        .await
        .unwrap();
    assert_eq!(bobs.count, 10);
    // A stanza-id is unique per user: the same batch again (a replayed Matrix transaction)
    // is kept once, while another user's entry with the same id (the same Matrix event,
    // seen by both) is theirs.
    store.archive(&batch[..2]).await.unwrap();
    assert_eq!(store.archive_page(&base).await.unwrap().count, 250);
    let mut carols = batch[0].clone();
    carols.user = "carol@example.org".into();
    store.archive(&[carols]).await.unwrap();
    let carol = ArchiveQuery {
        user: "carol@example.org".into(),
        ..base.clone()
    };
    assert_eq!(store.archive_page(&carol).await.unwrap().count, 1);
    assert_eq!(store.archive_page(&base).await.unwrap().count, 250);
    // Retention: by age, then by rows per user and room.
    let removed = store.prune_archive(Some(1_050_000), None).await.unwrap();
    assert_eq!(
        removed,
        50 + 10 + 10 + 1,
        "carol's copy of the oldest message too"
    );
    store.prune_archive(None, Some(100)).await.unwrap();
    let kept = store
        .archive_page(&ArchiveQuery {
            newest: true,
            ..base.clone()
        })
        .await
        .unwrap();
    assert_eq!(
        (kept.count, kept.messages.last().unwrap().body.as_str()),
        (100, "message 249")
    );

    // A NUL (a Matrix body may hold one) is archived, not a failed batch: PostgreSQL text
    // cannot hold it, so it is U+FFFD there.
    let mut nul = message(1, "dave@example.org", room);
    nul.body = "before\0after".into();
    store.archive(&[nul]).await.unwrap();
    let page = store
        .archive_page(&ArchiveQuery {
            user: "dave@example.org".into(),
            ..base.clone()
        })
        .await
        .unwrap();
    let expected = match store.backend() {
        Backend::Sqlite => "before\0after",
        Backend::Postgres => "before\u{fffd}after",
    };
    assert_eq!(page.messages[0].body, expected);
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
    archive_suite(&store).await;
    #[cfg(feature = "matrix")]
    crate::matrix::tests::matrix_suite(&store).await;
    let mode: String = sqlx::query("PRAGMA journal_mode")
        .fetch_one(&store.pool)
        .await
        .unwrap()
        .try_get(0)
        .unwrap();
    assert_eq!(mode, "wal");
    let secret = store.install_secret("occupant-id").await.unwrap();
    store.close().await;
    // Reopening runs no migration twice and keeps the data.
    let store = Store::open(&url, 1).await.unwrap();
    assert_eq!(
        store.install_secret("occupant-id").await.unwrap(),
        secret,
        "the secret survives a restart"
    );
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
    archive_suite(&store).await;
    #[cfg(feature = "matrix")]
    crate::matrix::tests::matrix_suite(&store).await;
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
