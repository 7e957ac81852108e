-- Users of the gateway, by bare JID, with their gateway-wide settings (JSON).
CREATE TABLE users (
    id          INTEGER PRIMARY KEY,
    jid         TEXT    NOT NULL UNIQUE,
    settings    TEXT    NOT NULL DEFAULT '{}',
    created_at  BIGINT  NOT NULL
);

-- Per user, per IRC server: identity and connection settings (JSON), and the SASL secret.
CREATE TABLE irc_server_settings (
    user_id        BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    server         TEXT   NOT NULL,
    settings       TEXT   NOT NULL DEFAULT '{}',
    sasl_password  TEXT,
    PRIMARY KEY (user_id, server)
);

-- Remote rooms (IRC channels, Matrix rooms) ↔ JID localparts. The remote name keeps its
-- case; the localpart is what XMPP servers deliver (case-folded), so lookups go through it.
CREATE TABLE rooms (
    id           INTEGER PRIMARY KEY,
    network      TEXT NOT NULL,
    server       TEXT NOT NULL,
    remote_name  TEXT NOT NULL,
    localpart    TEXT NOT NULL,
    settings     TEXT NOT NULL DEFAULT '{}',
    UNIQUE (network, localpart),
    UNIQUE (network, server, remote_name)
);

-- Remote users (IRC nicks, Matrix user ids) ↔ JID localparts, for 1:1 addresses.
CREATE TABLE remote_users (
    id          INTEGER PRIMARY KEY,
    network     TEXT NOT NULL,
    server      TEXT NOT NULL,
    remote_id   TEXT NOT NULL,
    localpart   TEXT NOT NULL,
    UNIQUE (network, localpart),
    UNIQUE (network, server, remote_id)
);
