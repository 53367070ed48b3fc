-- Temporary licenses: one per system ID and product, ever (issue: temporary licenses).
CREATE TABLE s_temporary (
  system_id  TEXT NOT NULL,
  product_id TEXT NOT NULL,
  license_id BIGINT NOT NULL UNIQUE,
  client_id  TEXT NOT NULL,
  platform   TEXT NOT NULL,
  client_key BLOB NOT NULL,
  issued     BIGINT NOT NULL,
  expires    BIGINT NOT NULL,
  cert       BLOB NOT NULL,
  PRIMARY KEY (system_id, product_id)
);
CREATE TABLE s_counters (
  name  TEXT PRIMARY KEY,
  value BIGINT NOT NULL
);
-- Temporary license IDs start at 2^40, far above the vendor's pack serial ranges.
INSERT INTO s_counters (name, value) VALUES ('temporary', 1099511627776);
