-- Pay-as-you-go (issue 9): the billing ledger and device provisioning.
-- One file for SQLite and PostgreSQL (BLOB becomes BYTEA). Ledger tables
-- are written once: corrections are compensating postings, never updates.
-- Idempotency records: a write's key, what it was, and its first answer.
CREATE TABLE v_payg_idempotency (
  idem_key     TEXT PRIMARY KEY,
  op           TEXT NOT NULL,
  request_hash BLOB NOT NULL,
  answer       BLOB,
  created      BIGINT NOT NULL
);
CREATE TABLE v_payg_accounts (
  id          TEXT PRIMARY KEY,
  customer_id TEXT NOT NULL REFERENCES v_customers(id),
  name        TEXT NOT NULL,
  currency    TEXT NOT NULL,
  created     BIGINT NOT NULL
);
CREATE INDEX v_payg_accounts_customer ON v_payg_accounts(customer_id);
CREATE TABLE v_payg_plans (
  id       TEXT PRIMARY KEY,
  name     TEXT NOT NULL,
  kind     TEXT NOT NULL CHECK (kind IN ('days', 'hours', 'until')),
  quantity BIGINT NOT NULL CHECK (quantity >= 0),
  until_at BIGINT,
  price    BIGINT NOT NULL CHECK (price > 0),
  currency TEXT NOT NULL,
  created  BIGINT NOT NULL
);
CREATE TABLE v_payg_postings (
  id         TEXT PRIMARY KEY,
  kind       TEXT NOT NULL CHECK (kind IN ('sale', 'payment', 'refund', 'reversal')),
  account_id TEXT NOT NULL REFERENCES v_payg_accounts(id),
  reference  TEXT NOT NULL,
  reverses   TEXT UNIQUE REFERENCES v_payg_postings(id),
  memo       TEXT NOT NULL,
  created    BIGINT NOT NULL
);
CREATE INDEX v_payg_postings_account ON v_payg_postings(account_id, created);
CREATE TABLE v_payg_lines (
  posting_id TEXT NOT NULL REFERENCES v_payg_postings(id),
  n          INT NOT NULL,
  ledger     TEXT NOT NULL,
  account_id TEXT REFERENCES v_payg_accounts(id),
  amount     BIGINT NOT NULL CHECK (amount <> 0),
  currency   TEXT NOT NULL,
  PRIMARY KEY (posting_id, n)
);
CREATE INDEX v_payg_lines_account ON v_payg_lines(account_id);
CREATE TABLE v_payg_sales (
  id         TEXT PRIMARY KEY,
  account_id TEXT NOT NULL REFERENCES v_payg_accounts(id),
  plan_id    TEXT NOT NULL REFERENCES v_payg_plans(id),
  device_id  TEXT,
  new_device BOOLEAN NOT NULL,
  price      BIGINT NOT NULL,
  currency   TEXT NOT NULL,
  posting_id TEXT NOT NULL UNIQUE REFERENCES v_payg_postings(id),
  created    BIGINT NOT NULL
);
CREATE TABLE v_payg_webhooks (
  name    TEXT PRIMARY KEY,
  secret  BLOB NOT NULL,
  created BIGINT NOT NULL
);
-- Registration codes (hashes only), one per new-device sale.
CREATE TABLE v_payg_codes (
  code_hash  BLOB PRIMARY KEY,
  account_id TEXT NOT NULL REFERENCES v_payg_accounts(id),
  sale_id    TEXT NOT NULL UNIQUE REFERENCES v_payg_sales(id),
  created    BIGINT NOT NULL,
  expires    BIGINT NOT NULL,
  used_by    TEXT,
  used_at    BIGINT
);
-- Devices. last_sequence is changed only by one conditional update per
-- packet, in the packet's transaction.
CREATE TABLE v_payg_devices (
  id              TEXT PRIMARY KEY,
  account_id      TEXT NOT NULL REFERENCES v_payg_accounts(id),
  system_id       TEXT NOT NULL,
  salt            TEXT NOT NULL,
  fingerprint     TEXT NOT NULL,
  public_key      BLOB NOT NULL,
  hpke_key        BLOB NOT NULL,
  init_key        BLOB NOT NULL,
  cert            BLOB NOT NULL,
  last_sequence   BIGINT NOT NULL CHECK (last_sequence >= 0),
  registered      BIGINT NOT NULL,
  report_sequence BIGINT,
  report_used     BIGINT,
  report_at       BIGINT,
  flag            TEXT NOT NULL,
  flagged_at      BIGINT
);
CREATE INDEX v_payg_devices_account ON v_payg_devices(account_id);
CREATE INDEX v_payg_devices_system ON v_payg_devices(system_id);
CREATE INDEX v_payg_devices_salt ON v_payg_devices(salt);
CREATE TABLE v_payg_packets (
  device_id TEXT NOT NULL REFERENCES v_payg_devices(id),
  sequence  BIGINT NOT NULL CHECK (sequence > 0),
  sale_id   TEXT NOT NULL UNIQUE REFERENCES v_payg_sales(id),
  file      BLOB NOT NULL,
  created   BIGINT NOT NULL,
  PRIMARY KEY (device_id, sequence)
);
-- Every sync report, so an administrator sees a device's history.
CREATE TABLE v_payg_reports (
  device_id        TEXT NOT NULL REFERENCES v_payg_devices(id),
  at               BIGINT NOT NULL,
  highest_sequence BIGINT NOT NULL,
  used_seconds     BIGINT NOT NULL,
  backwards        BOOLEAN NOT NULL
);
CREATE INDEX v_payg_reports_device ON v_payg_reports(device_id, at);
CREATE TABLE v_payg_clones (
  id              TEXT PRIMARY KEY,
  device_id       TEXT NOT NULL REFERENCES v_payg_devices(id),
  account_id      TEXT NOT NULL,
  attempt_account TEXT NOT NULL,
  system_id       TEXT NOT NULL,
  at              BIGINT NOT NULL
);
CREATE TABLE v_payg_nonces (
  device_id TEXT NOT NULL,
  nonce     TEXT NOT NULL,
  expires   BIGINT NOT NULL,
  PRIMARY KEY (device_id, nonce)
);
CREATE INDEX v_payg_nonces_expires ON v_payg_nonces(expires);
