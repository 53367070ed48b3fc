-- Keypad devices (issue 8): OpenPAYGO Token devices without a network. The
-- device key is sealed (AES-256-GCM under the data directory's keypad.key,
-- the serial number as additional data); last_count is the count of the last
-- token issued, changed only under the row's lock.
CREATE TABLE v_keypad_devices (
  serial        TEXT PRIMARY KEY,
  sealed_key    BLOB NOT NULL,
  starting_code BIGINT NOT NULL CHECK (starting_code >= 0 AND starting_code <= 999999999),
  divider       BIGINT NOT NULL CHECK (divider > 0),
  extended      BOOLEAN NOT NULL,
  restricted    BOOLEAN NOT NULL,
  last_count    BIGINT NOT NULL CHECK (last_count >= 0),
  created       BIGINT NOT NULL
);
-- One row per token issued; the token text is not stored (it is credit
-- until used, and the count gives it again).
CREATE TABLE v_keypad_tokens (
  serial          TEXT NOT NULL REFERENCES v_keypad_devices(serial),
  count           BIGINT NOT NULL,
  type            TEXT NOT NULL,
  value           BIGINT NOT NULL,
  issued          BIGINT NOT NULL,
  issued_by       TEXT NOT NULL,
  idempotency_key TEXT UNIQUE,
  PRIMARY KEY (serial, count)
);
