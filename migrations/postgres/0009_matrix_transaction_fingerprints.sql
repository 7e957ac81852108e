-- What each processed appservice transaction held (a hash of its event ids), so that a
-- homeserver whose transaction ids start again (a new or reset database) is noticed: a
-- known id with other events is processed, not taken for a replay. Rows from before have
-- none and count as replays, as they did.
ALTER TABLE matrix_transactions ADD COLUMN fingerprint TEXT;
CREATE INDEX matrix_transactions_by_age ON matrix_transactions (done_at);
