-- A direct room between two XMPP users' puppets is each one's direct room with the other:
-- one row per side, so a room may be named twice.
CREATE TABLE matrix_direct_rooms_per_side (
    puppet   TEXT NOT NULL,
    remote   TEXT NOT NULL,
    room     TEXT NOT NULL,
    PRIMARY KEY (puppet, remote)
);
INSERT INTO matrix_direct_rooms_per_side (puppet, remote, room)
    SELECT puppet, remote, room FROM matrix_direct_rooms;
DROP TABLE matrix_direct_rooms;
ALTER TABLE matrix_direct_rooms_per_side RENAME TO matrix_direct_rooms;
CREATE INDEX matrix_direct_rooms_by_room ON matrix_direct_rooms (room);
