-- Per-user message archive (XEP-0313): what each room showed each user. `stanza_id` is the
-- XEP-0359 id the message carried when delivered, stable across restarts.
CREATE TABLE archive (
    id          INTEGER PRIMARY KEY,
    stanza_id   TEXT    NOT NULL UNIQUE,
    user_jid    TEXT    NOT NULL,
    room        TEXT    NOT NULL,
    sender      TEXT    NOT NULL,
    body        TEXT    NOT NULL,
    origin_id   TEXT,
    at_ms       BIGINT  NOT NULL
);
CREATE INDEX archive_by_room ON archive (user_jid, room, id);
CREATE INDEX archive_by_time ON archive (user_jid, room, at_ms);
