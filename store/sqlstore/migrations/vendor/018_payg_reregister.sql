-- Re-registration of a pay-as-you-go device from a fresh agent directory
-- (issue 9): the device lost its state or was reinstalled.
-- Codes an administrator issues to re-register one registered device
-- ('licet vendor device reregister'), hashes only, beside the codes of
-- new-device sales in v_payg_codes.
CREATE TABLE v_payg_reregister_codes (
  code_hash BLOB PRIMARY KEY,
  device_id TEXT NOT NULL REFERENCES v_payg_devices(id),
  created   BIGINT NOT NULL,
  expires   BIGINT NOT NULL,
  used_at   BIGINT
);
CREATE INDEX v_payg_reregister_codes_device ON v_payg_reregister_codes(device_id);
-- The last re-registration: when, the sequence the new installation starts
-- after (its earlier packets were the old installation's), and the old
-- installation's last report (JSON), which the device's report columns
-- held until the new installation's reports replaced it.
ALTER TABLE v_payg_devices ADD COLUMN reregistered_at BIGINT;
ALTER TABLE v_payg_devices ADD COLUMN base_sequence BIGINT NOT NULL DEFAULT 0;
ALTER TABLE v_payg_devices ADD COLUMN previous_report TEXT;
