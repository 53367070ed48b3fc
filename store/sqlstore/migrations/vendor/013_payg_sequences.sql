-- Packet sequences of pay-as-you-go devices (issue 9), apart from the
-- devices' wide rows (keys, certificate, fingerprint: about 3.5 KB each):
-- allocating a sequence rewrites a row of a few bytes instead of a page of
-- the device's, and a batch sale allocates thousands in one transaction.
-- v_payg_devices.last_sequence is no longer read or written: this table is
-- the device's last packet sequence from here on.
CREATE TABLE v_payg_sequences (
  device_id     TEXT PRIMARY KEY REFERENCES v_payg_devices(id),
  last_sequence BIGINT NOT NULL CHECK (last_sequence >= 0)
);
INSERT INTO v_payg_sequences (device_id, last_sequence) SELECT id, last_sequence FROM v_payg_devices;
