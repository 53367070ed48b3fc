-- Signed usage reports of sites (issue 12): each report as received, its
-- place in the site's hash chain, and what the vendor found wrong with it.
CREATE TABLE v_usage_reports (
  site_id  TEXT NOT NULL,
  hash     BLOB NOT NULL,
  sequence BIGINT NOT NULL,
  previous BLOB NOT NULL,
  received BIGINT NOT NULL,
  licenses BIGINT NOT NULL,
  flags    TEXT NOT NULL,
  file     BLOB NOT NULL,
  PRIMARY KEY (site_id, hash)
);
CREATE INDEX v_usage_reports_seq ON v_usage_reports (site_id, sequence);
