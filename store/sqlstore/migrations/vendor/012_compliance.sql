-- Compliance (issue 10): policy bundles, reset packets, device reports.
CREATE TABLE v_compliance_bundles (
  version   BIGINT PRIMARY KEY,
  file      TEXT NOT NULL,
  published BIGINT NOT NULL
);
CREATE TABLE v_compliance_resets (
  device_id TEXT NOT NULL,
  sequence  BIGINT NOT NULL,
  reason    TEXT NOT NULL,
  file      TEXT NOT NULL,
  created   BIGINT NOT NULL,
  PRIMARY KEY (device_id, sequence)
);
CREATE TABLE v_compliance_reports (
  device_id      TEXT PRIMARY KEY,
  score          INTEGER NOT NULL,
  mode           TEXT NOT NULL,
  bundle_version BIGINT NOT NULL,
  reset_sequence BIGINT NOT NULL,
  failing        TEXT NOT NULL,
  evaluated      BIGINT NOT NULL,
  at             BIGINT NOT NULL,
  changed        BIGINT NOT NULL
);
CREATE INDEX v_compliance_reports_score ON v_compliance_reports(score);
