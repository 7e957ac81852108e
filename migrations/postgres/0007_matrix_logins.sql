-- Users' own Matrix logins (personal mode), kept between runs so that a restart needs no new
-- device: the XMPP user (bare JID), the Matrix account, the session as the bridge restores it
-- (JSON: homeserver, device id, tokens) and the passphrase of the user's matrix-sdk stores.
-- session and store_key are secrets.
CREATE TABLE matrix_logins (
    user_jid    TEXT    PRIMARY KEY,
    account     TEXT    NOT NULL,
    session     TEXT    NOT NULL,
    store_key   TEXT    NOT NULL,
    saved_at    BIGINT  NOT NULL
);
