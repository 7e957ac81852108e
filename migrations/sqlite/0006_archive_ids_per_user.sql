-- A stanza-id is unique per user, no longer across users: messages from Matrix carry their
-- event id as stanza-id, the same for every XMPP user in the room, so that retractions,
-- reactions and replies that name it reach the right event.
CREATE TABLE archive_per_user (
    id          INTEGER PRIMARY KEY,
    stanza_id   TEXT    NOT NULL,
    user_jid    TEXT    NOT NULL,
    room        TEXT    NOT NULL,
    sender      TEXT    NOT NULL,
    body        TEXT    NOT NULL,
    origin_id   TEXT,
    at_ms       BIGINT  NOT NULL,
    UNIQUE (user_jid, stanza_id)
);
INSERT INTO archive_per_user (id, stanza_id, user_jid, room, sender, body, origin_id, at_ms)
    SELECT id, stanza_id, user_jid, room, sender, body, origin_id, at_ms FROM archive;
DROP TABLE archive;
ALTER TABLE archive_per_user RENAME TO archive;
CREATE INDEX archive_by_room ON archive (user_jid, room, id);
CREATE INDEX archive_by_time ON archive (user_jid, room, at_ms);
