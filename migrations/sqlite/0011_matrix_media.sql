-- Matrix files offered to XMPP users: each link the gateway hands out (its random token)
-- names the file (its Matrix source, as JSON: an mxc:// address, or an encrypted file
-- with its key), the event that carried it (a redaction withdraws the link), whose login
-- fetches it (the XMPP user of a personal login; empty for the appservice), and until
-- when the link works (seconds since 1970). One link per event and login.
CREATE TABLE matrix_media (
    token      TEXT PRIMARY KEY,
    event_id   TEXT NOT NULL,
    owner      TEXT NOT NULL,
    source     TEXT NOT NULL,
    name       TEXT NOT NULL,
    mimetype   TEXT,
    size       BIGINT,
    expires_at BIGINT NOT NULL,
    UNIQUE (event_id, owner)
);
CREATE INDEX matrix_media_by_expiry ON matrix_media (expires_at);
