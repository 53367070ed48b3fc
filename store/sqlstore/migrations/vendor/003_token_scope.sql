-- Token scopes, as at the site; vendor tokens are all admin tokens today.
ALTER TABLE v_tokens ADD COLUMN scope TEXT NOT NULL DEFAULT 'admin';
