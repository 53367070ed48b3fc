-- Software distribution (issue 11): device groups, device credentials
-- (only the token's SHA-256 is kept), the vendor's metadata as the site
-- verified it, and the statuses devices report, queued for the vendor.
CREATE TABLE s_dist_groups (
  name    TEXT PRIMARY KEY,
  created BIGINT NOT NULL
);
CREATE TABLE s_dist_devices (
  id         TEXT PRIMARY KEY,
  name       TEXT NOT NULL UNIQUE,
  grp        TEXT NOT NULL REFERENCES s_dist_groups(name),
  token_hash BLOB NOT NULL UNIQUE,
  created    BIGINT NOT NULL
);
CREATE TABLE s_dist_roots (
  version BIGINT PRIMARY KEY,
  body    BLOB NOT NULL,
  anchor  BLOB NOT NULL
);
CREATE TABLE s_dist_meta (
  grp     TEXT NOT NULL,
  role    TEXT NOT NULL,
  version BIGINT NOT NULL,
  body    BLOB NOT NULL,
  PRIMARY KEY (grp, role, version)
);
CREATE TABLE s_dist_reports (
  id      BIGINT PRIMARY KEY,
  device  TEXT NOT NULL,
  grp     TEXT NOT NULL,
  app_id  TEXT NOT NULL,
  version TEXT NOT NULL,
  status  TEXT NOT NULL,
  log     TEXT NOT NULL,
  at      BIGINT NOT NULL,
  sent    BOOLEAN NOT NULL
);
