-- Secrets of this installation, made once at first start and kept: `occupant-id`, the key
-- of the XEP-0421 occupant-ids, so that they stay the same across restarts.
CREATE TABLE install_secrets (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
