-- Software distribution (issue 11): applications, releases with their
-- per-platform artifacts, artifact bodies in chunks (so any replica serves
-- them), the bundle each customer group is assigned, the signed TUF
-- metadata, and the device statuses and installed versions sites report.
CREATE TABLE v_dist_apps (
  id      TEXT PRIMARY KEY,
  name    TEXT NOT NULL,
  created BIGINT NOT NULL
);
CREATE TABLE v_dist_releases (
  id      TEXT PRIMARY KEY,
  app_id  TEXT NOT NULL REFERENCES v_dist_apps(id),
  version TEXT NOT NULL,
  channel TEXT NOT NULL,
  notes   TEXT NOT NULL,
  created BIGINT NOT NULL,
  UNIQUE (app_id, version)
);
CREATE TABLE v_dist_artifacts (
  release_id TEXT NOT NULL REFERENCES v_dist_releases(id),
  platform   TEXT NOT NULL,
  name       TEXT NOT NULL,
  size       BIGINT NOT NULL CHECK (size > 0),
  sha256     TEXT NOT NULL,
  PRIMARY KEY (release_id, platform)
);
CREATE TABLE v_dist_blobs (
  sha256   TEXT PRIMARY KEY,
  size     BIGINT NOT NULL,
  complete BOOLEAN NOT NULL
);
CREATE TABLE v_dist_chunks (
  sha256 TEXT NOT NULL,
  idx    BIGINT NOT NULL,
  data   BLOB NOT NULL,
  PRIMARY KEY (sha256, idx)
);
-- rollout is the staged rollout as JSON (catalog.Rollout), '' for none;
-- channel, if not '', is the release channel the bundle follows.
CREATE TABLE v_dist_bundles (
  customer_id TEXT NOT NULL REFERENCES v_customers(id),
  grp         TEXT NOT NULL,
  app_id      TEXT NOT NULL REFERENCES v_dist_apps(id),
  release_id  TEXT NOT NULL REFERENCES v_dist_releases(id),
  updated     BIGINT NOT NULL,
  rollout     TEXT NOT NULL,
  channel     TEXT NOT NULL,
  PRIMARY KEY (customer_id, grp, app_id)
);
-- Root metadata versions with the key generations and thresholds they name.
CREATE TABLE v_dist_roots (
  version BIGINT PRIMARY KEY,
  body    BLOB NOT NULL,
  keyring TEXT NOT NULL
);
-- Every version of every group's targets, snapshot and timestamp; the
-- primary key orders concurrent publishers.
CREATE TABLE v_dist_meta (
  customer_id TEXT NOT NULL,
  grp         TEXT NOT NULL,
  role        TEXT NOT NULL,
  version     BIGINT NOT NULL,
  expires     BIGINT NOT NULL,
  body        BLOB NOT NULL,
  PRIMARY KEY (customer_id, grp, role, version)
);
CREATE TABLE v_dist_status (
  customer_id TEXT NOT NULL,
  site_id     TEXT NOT NULL,
  grp         TEXT NOT NULL,
  device      TEXT NOT NULL,
  app_id      TEXT NOT NULL,
  version     TEXT NOT NULL,
  status      TEXT NOT NULL,
  log         TEXT NOT NULL,
  at          BIGINT NOT NULL,
  PRIMARY KEY (customer_id, site_id, device, app_id)
);
-- How many devices each site has per group, as the site said on its last
-- sync: what a staged rollout's automatic advance counts against.
CREATE TABLE v_dist_site_devices (
  customer_id TEXT NOT NULL,
  site_id     TEXT NOT NULL,
  grp         TEXT NOT NULL,
  devices     BIGINT NOT NULL,
  updated     BIGINT NOT NULL,
  PRIMARY KEY (customer_id, site_id, grp)
);
CREATE TABLE v_dist_installed (
  customer_id TEXT NOT NULL,
  app_id      TEXT NOT NULL,
  version     TEXT NOT NULL,
  device      TEXT NOT NULL,
  at          BIGINT NOT NULL,
  PRIMARY KEY (customer_id, app_id)
);
