-- Pay-as-you-go batch sales (issue 9): a device's keys version, beside its
-- packet sequence in the narrow v_payg_sequences. Every re-registration
-- (new keys, new initialization key) adds one. A batch sale reads the
-- devices' keys before its transaction and makes their packets meanwhile;
-- inside, the update that allocates the sequences returns the version, so
-- a packet made for older keys is made again without reading the devices'
-- wide rows in the transaction.
ALTER TABLE v_payg_sequences ADD COLUMN keys_version BIGINT NOT NULL DEFAULT 0;
