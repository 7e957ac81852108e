-- Per user and channel: the nick, settings (NULL = inherit), and whether the puppet is in it
-- now, so persistent channels are joined again after a restart.
CREATE TABLE user_channels (
    user_jid    TEXT   NOT NULL,
    server      TEXT   NOT NULL,
    channel     TEXT   NOT NULL,
    nick        TEXT   NOT NULL DEFAULT '',
    persistent  BIGINT,
    record      BIGINT,
    joined      BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (user_jid, server, channel)
);
