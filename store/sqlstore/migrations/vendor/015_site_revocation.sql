-- Site revocation (issue 12): when the vendor revoked a site and why. A
-- revoked site cannot renew its certificate, buy packs or send usage
-- reports, and is listed in the signed list of revoked sites.
ALTER TABLE v_sites ADD COLUMN revoked BIGINT;
ALTER TABLE v_sites ADD COLUMN revoke_reason TEXT NOT NULL DEFAULT '';
