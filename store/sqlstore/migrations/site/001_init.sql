CREATE TABLE s_tokens (
  id      TEXT PRIMARY KEY,
  name    TEXT NOT NULL,
  hash    BLOB NOT NULL UNIQUE,
  created BIGINT NOT NULL
);
CREATE TABLE s_packs (
  pack_id         TEXT PRIMARY KEY,
  order_id        TEXT NOT NULL,
  product_id      TEXT NOT NULL,
  product_name    TEXT NOT NULL,
  product_version TEXT NOT NULL,
  platform        TEXT NOT NULL,
  features        TEXT NOT NULL,
  quantity        BIGINT NOT NULL,
  assigned        BIGINT NOT NULL DEFAULT 0,
  begin_serial    BIGINT NOT NULL,
  first_active    BIGINT,
  expires         BIGINT,
  descriptions    TEXT NOT NULL,
  manufacturer    TEXT NOT NULL,
  product_data    TEXT NOT NULL,
  installed       BIGINT NOT NULL,
  CHECK (assigned >= 0 AND assigned <= quantity)
);
CREATE INDEX s_packs_product ON s_packs(product_id, platform);
CREATE TABLE s_pack_files (
  pack_id TEXT PRIMARY KEY REFERENCES s_packs(pack_id),
  file    BLOB NOT NULL
);
CREATE TABLE s_images (
  software_id BIGINT PRIMARY KEY,
  name        TEXT NOT NULL,
  sha256      BLOB NOT NULL,
  size        BIGINT NOT NULL,
  added       BIGINT NOT NULL
);
CREATE TABLE s_used_challenges (
  id      TEXT PRIMARY KEY,
  expires BIGINT NOT NULL
);
CREATE INDEX s_used_challenges_expires ON s_used_challenges(expires);
CREATE TABLE s_assignments (
  license_id BIGINT PRIMARY KEY,
  pack_id    TEXT NOT NULL REFERENCES s_packs(pack_id),
  client_id  TEXT NOT NULL,
  system_id  TEXT NOT NULL,
  product_id TEXT NOT NULL,
  platform   TEXT NOT NULL,
  client_key BLOB NOT NULL,
  issued     BIGINT NOT NULL,
  expires    BIGINT,
  cert       BLOB,
  UNIQUE (client_id, product_id)
);
CREATE INDEX s_assignments_pack ON s_assignments(pack_id);
