-- Token scopes (issue: license upgrades): a gateway's token may only upgrade.
ALTER TABLE s_tokens ADD COLUMN scope TEXT NOT NULL DEFAULT 'admin';
