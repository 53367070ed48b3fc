-- Token lifecycle (issue 12): every new token expires, tokens can be revoked,
-- and a token may be bound to one product. Tokens made before have no expiry
-- (NULL); 'licet vendor apitoken list' shows them so they can be rotated.
ALTER TABLE v_tokens ADD COLUMN expires BIGINT;
ALTER TABLE v_tokens ADD COLUMN revoked BIGINT;
ALTER TABLE v_tokens ADD COLUMN product TEXT NOT NULL DEFAULT '';
