-- A stanza-id is unique per user, no longer across users: messages from Matrix carry their
-- event id as stanza-id, the same for every XMPP user in the room, so that retractions,
-- reactions and replies that name it reach the right event.
ALTER TABLE archive DROP CONSTRAINT archive_stanza_id_key;
ALTER TABLE archive ADD CONSTRAINT archive_user_stanza_id UNIQUE (user_jid, stanza_id);
