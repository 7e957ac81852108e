-- Appservice transactions processed, so a transaction replayed by the homeserver (after a
-- restart on either side) is processed once.
CREATE TABLE matrix_transactions (
    txn_id   TEXT   PRIMARY KEY,
    done_at  BIGINT NOT NULL
);

-- The same message on both sides: the XMPP id (origin-id / message id; the event id for
-- messages from Matrix) and the Matrix event id, for corrections, retractions, reactions
-- and replies.
CREATE TABLE message_links (
    room      TEXT NOT NULL,
    xmpp_id   TEXT NOT NULL,
    event_id  TEXT NOT NULL,
    sender    TEXT NOT NULL,
    PRIMARY KEY (room, event_id)
);
CREATE INDEX message_links_by_xmpp_id ON message_links (room, xmpp_id);

-- Direct rooms between an XMPP user's puppet and a Matrix user.
CREATE TABLE matrix_direct_rooms (
    puppet   TEXT NOT NULL,
    remote   TEXT NOT NULL,
    room     TEXT NOT NULL UNIQUE,
    PRIMARY KEY (puppet, remote)
);
