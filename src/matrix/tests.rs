//! The bridge's storage trait over the store.

use crate::store::Store;

/// The Matrix bridge's state, as the bridge uses it through [`MatrixStore`] over the
/// store: run by the store's tests on SQLite and on PostgreSQL.
pub(crate) async fn matrix_suite(store: &Store) {
    use causeway_matrix::store::{MatrixStore, MessageLink, SavedLogin};
    use std::time::Duration;
    assert_eq!(store.transaction_seen("t1").await.unwrap(), None);
    store.transaction_done("t1", "aaa").await.unwrap();
    store.transaction_done("t1", "aaa").await.unwrap();
    assert_eq!(
        store.transaction_seen("t1").await.unwrap().as_deref(),
        Some("aaa")
    );
    // The same id holding other events (a homeserver that started its ids again).
    store.transaction_done("t1", "bbb").await.unwrap();
    assert_eq!(
        store.transaction_seen("t1").await.unwrap().as_deref(),
        Some("bbb")
    );
    // Pruned once older than the retention; recent ones stay.
    assert_eq!(
        store
            .prune_transactions(Duration::from_secs(3600))
            .await
            .unwrap(),
        0
    );
    assert!(store.transaction_seen("t1").await.unwrap().is_some());
    store.backdate_matrix_transaction("t1", 7200).await.unwrap();
    assert_eq!(
        store
            .prune_transactions(Duration::from_secs(3600))
            .await
            .unwrap(),
        1
    );
    assert_eq!(store.transaction_seen("t1").await.unwrap(), None);

    store.remember_room("!AbCdEf").await.unwrap();
    store.remember_room("!XyZ:Example.org").await.unwrap();
    assert_eq!(
        store.find_room("!abcdef").await.unwrap().as_deref(),
        Some("!AbCdEf")
    );
    assert_eq!(
        store
            .find_room("!xyz:example.org")
            .await
            .unwrap()
            .as_deref(),
        Some("!XyZ:Example.org")
    );
    assert_eq!(store.find_room("!nope").await.unwrap(), None);

    let link = |xmpp: &str, event: &str, sender: &str| MessageLink {
        room: "!AbCdEf".into(),
        xmpp_id: xmpp.into(),
        event_id: event.into(),
        sender: sender.into(),
    };
    store
        .link_message(&link("m1", "$e1", "@p:hs"))
        .await
        .unwrap();
    store
        .link_message(&link("m1", "$e1", "@p:hs"))
        .await
        .unwrap();
    for id in ["m1", "$e1"] {
        let found = store.find_message("!AbCdEf", id).await.unwrap().unwrap();
        assert_eq!(
            (found.xmpp_id.as_str(), found.event_id.as_str()),
            ("m1", "$e1")
        );
    }
    assert!(store.find_message("!other", "m1").await.unwrap().is_none());
    // Reactions are links named after their target and key; `_` in ids is no wildcard.
    store
        .link_message(&link("reaction $e1 👍", "$r1", "@p:hs"))
        .await
        .unwrap();
    store
        .link_message(&link("reaction $e1 🎉", "$r2", "@p:hs"))
        .await
        .unwrap();
    store
        .link_message(&link("reaction $e1 👍", "$r3", "@q:hs"))
        .await
        .unwrap();
    store
        .link_message(&link("reaction $ex1 👍", "$r4", "@p:hs"))
        .await
        .unwrap();
    let mut mine = store.reactions("!AbCdEf", "$e1", "@p:hs").await.unwrap();
    mine.sort();
    assert_eq!(
        mine,
        [
            ("🎉".to_owned(), "$r2".to_owned()),
            ("👍".to_owned(), "$r1".to_owned())
        ]
    );
    assert!(store
        .reactions("!AbCdEf", "$_1", "@p:hs")
        .await
        .unwrap()
        .is_empty());
    store.unlink("!AbCdEf", "$r2").await.unwrap();
    assert_eq!(
        store
            .reactions("!AbCdEf", "$e1", "@p:hs")
            .await
            .unwrap()
            .len(),
        1
    );

    assert_eq!(store.direct_room("@p:hs", "@bob:hs").await.unwrap(), None);
    store
        .set_direct_room("@p:hs", "@bob:hs", "!dm1")
        .await
        .unwrap();
    assert_eq!(
        store
            .direct_room("@p:hs", "@bob:hs")
            .await
            .unwrap()
            .as_deref(),
        Some("!dm1")
    );
    let parties = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(p, r)| (p.to_string(), r.to_string()))
            .collect()
    };
    assert_eq!(
        store.direct_room_parties("!dm1").await.unwrap(),
        parties(&[("@p:hs", "@bob:hs")])
    );
    // A direct room between two puppets is each one's.
    store
        .set_direct_room("@q:hs", "@p:hs", "!dm1")
        .await
        .unwrap();
    assert_eq!(
        store.direct_room_parties("!dm1").await.unwrap(),
        parties(&[("@p:hs", "@bob:hs"), ("@q:hs", "@p:hs")])
    );
    store
        .set_direct_room("@p:hs", "@bob:hs", "!dm2")
        .await
        .unwrap();
    assert_eq!(
        store.direct_room_parties("!dm1").await.unwrap(),
        parties(&[("@q:hs", "@p:hs")])
    );

    // Users' own logins: saved, replaced (one per user), listed, forgotten.
    let login = |user: &str, account: &str, session: &str| SavedLogin {
        user: user.into(),
        account: account.into(),
        session: session.into(),
        store_key: format!("key of {user}"),
    };
    assert!(store.logins().await.unwrap().is_empty());
    store
        .save_login(&login("alice@xmpp.test", "@alice:hs", "{\"device\":\"A\"}"))
        .await
        .unwrap();
    store
        .save_login(&login("bob@xmpp.test", "@bob:hs", "{\"device\":\"B\"}"))
        .await
        .unwrap();
    let replaced = login("alice@xmpp.test", "@alice2:hs", "{\"device\":\"C\"}");
    store.save_login(&replaced).await.unwrap();
    let mut logins = store.logins().await.unwrap();
    logins.sort_by(|a, b| a.user.cmp(&b.user));
    assert_eq!(
        logins,
        [
            replaced.clone(),
            login("bob@xmpp.test", "@bob:hs", "{\"device\":\"B\"}")
        ]
    );
    store.forget_login("bob@xmpp.test").await.unwrap();
    store.forget_login("nobody@xmpp.test").await.unwrap();
    assert_eq!(store.logins().await.unwrap(), [replaced]);

    // Offered files: found by token while their link works, pruned once it expired.
    use causeway_matrix::store::OfferedFile;
    use std::time::SystemTime;
    let in_a_day = SystemTime::UNIX_EPOCH
        + Duration::from_secs(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_secs()
                + 86_400,
        );
    let file = OfferedFile {
        token: "0123abcd".into(),
        event_id: "$cat".into(),
        owner: Some("alice@xmpp.test".into()),
        source: "\"mxc://hs/abc\"".into(),
        name: "cat.png".into(),
        mimetype: Some("image/png".into()),
        size: Some(5_000_000_000),
        expires: in_a_day,
    };
    assert_eq!(store.offer_file(&file).await.unwrap(), "0123abcd");
    // The same event's file offered to the same login again: the same link.
    let again = OfferedFile {
        token: "another".into(),
        ..file.clone()
    };
    assert_eq!(store.offer_file(&again).await.unwrap(), "0123abcd");
    let expired = OfferedFile {
        token: "expired".into(),
        event_id: "$old".into(),
        owner: None,
        mimetype: None,
        size: None,
        expires: SystemTime::now() - Duration::from_secs(1),
        ..file.clone()
    };
    store.offer_file(&expired).await.unwrap();
    assert_eq!(
        store.offered_file("0123abcd").await.unwrap(),
        Some(file.clone())
    );
    assert_eq!(store.offered_file("expired").await.unwrap(), None);
    assert_eq!(store.offered_file("unknown").await.unwrap(), None);
    assert_eq!(store.prune_files().await.unwrap(), 1);
    assert!(store.offered_file("0123abcd").await.unwrap().is_some());
    // The appservice's link to the same file is its own; a redaction withdraws both.
    let appservice = OfferedFile {
        token: "for the appservice".into(),
        owner: None,
        ..file.clone()
    };
    assert_eq!(
        store.offer_file(&appservice).await.unwrap(),
        "for the appservice"
    );
    assert_eq!(
        store.offer_file(&appservice).await.unwrap(),
        "for the appservice"
    );
    store.withdraw_files("$cat").await.unwrap();
    assert_eq!(store.offered_file("0123abcd").await.unwrap(), None);
    assert_eq!(
        store.offered_file("for the appservice").await.unwrap(),
        None
    );
}
