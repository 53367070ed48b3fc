-- Seat leases (issue 13): a serving process takes seats of a pack in blocks,
-- so that it can sign their licenses before its grant transaction and grants
-- do not all update the pack row. s_packs.assigned now counts the seats taken
-- out of the pack (assigned or leased); a leased seat has a row here until a
-- grant consumes it (deleting the row in the grant's transaction) or it is
-- given back (owner ''). The number of seats assigned is s_packs.assigned
-- minus the pack's rows here, exact at every commit. A lease expires, after
-- which another process may take it first; a process whose lease was taken
-- finds its row gone or re-owned and signs again with another seat.
CREATE TABLE s_seat_leases (
  serial  BIGINT PRIMARY KEY,
  pack_id TEXT NOT NULL REFERENCES s_packs(pack_id),
  owner   TEXT NOT NULL,
  expires BIGINT NOT NULL
);
CREATE INDEX s_seat_leases_pack ON s_seat_leases(pack_id, owner);
