-- License upgrades (issue: license upgrades).
-- An upgrade pack's seats exchange a license of a version in
-- [upgrade_from_min, upgrade_from_max] for one of the pack's product version;
-- both NULL for a pack of new seats.
ALTER TABLE s_packs ADD COLUMN upgrade_from_min TEXT;
ALTER TABLE s_packs ADD COLUMN upgrade_from_max TEXT;
-- The client's HPKE key, so that an upgraded license can be sealed to the
-- client without it asking again; the upgrade pack whose seat the current
-- license took, and the license it replaced.
ALTER TABLE s_assignments ADD COLUMN client_hpke BLOB;
ALTER TABLE s_assignments ADD COLUMN upgrade_pack_id TEXT;
ALTER TABLE s_assignments ADD COLUMN upgraded_from BIGINT;
