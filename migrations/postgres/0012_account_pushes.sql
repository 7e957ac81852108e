-- What the gateway put into users' accounts (XEP-0356): a bookmark of a room, a contact,
-- once — a bookmark the user removed or renamed, a contact they edited, stays as they left
-- it. `kind` is `bookmark` or `contact`; `target` the room's or the person's JID.
CREATE TABLE account_pushes (
    user_jid  TEXT NOT NULL,
    kind      TEXT NOT NULL,
    target    TEXT NOT NULL,
    pushed_at BIGINT NOT NULL,
    PRIMARY KEY (user_jid, kind, target)
);
