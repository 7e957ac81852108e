-- A direct room between two XMPP users' puppets is each one's direct room with the other:
-- one row per side, so a room may be named twice.
ALTER TABLE matrix_direct_rooms DROP CONSTRAINT matrix_direct_rooms_room_key;
CREATE INDEX matrix_direct_rooms_by_room ON matrix_direct_rooms (room);
