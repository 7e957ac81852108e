-- A user's encoding for a channel's text (koi8-r, windows-1252…); NULL: the server's.
ALTER TABLE user_channels ADD COLUMN encoding TEXT;
