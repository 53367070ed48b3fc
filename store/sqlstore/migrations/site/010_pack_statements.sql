-- Licenses bound to the sale (issue 12). statement: the clearinghouse-signed
-- pack statement every license of the pack carries (NULL for packs issued
-- before statements). temp_*: the temporary licenses the statement allows
-- (count, longest validity in days, first license ID) and how many the site
-- has issued; packs without a statement allow none.
ALTER TABLE s_packs ADD COLUMN statement BLOB;
ALTER TABLE s_packs ADD COLUMN temp_count BIGINT NOT NULL DEFAULT 0;
ALTER TABLE s_packs ADD COLUMN temp_max_days BIGINT NOT NULL DEFAULT 0;
ALTER TABLE s_packs ADD COLUMN temp_begin BIGINT NOT NULL DEFAULT 0;
ALTER TABLE s_packs ADD COLUMN temp_assigned BIGINT NOT NULL DEFAULT 0;
-- The pack a temporary license is charged to ('' before statements).
ALTER TABLE s_temporary ADD COLUMN pack_id TEXT NOT NULL DEFAULT '';
-- Signed usage reports (issue 12): the site's hash chain of reports to the vendor.
CREATE TABLE s_usage_reports (
  sequence BIGINT PRIMARY KEY,
  hash     BLOB NOT NULL,
  created  BIGINT NOT NULL,
  file     BLOB NOT NULL
);
