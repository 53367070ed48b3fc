CREATE TABLE v_tokens (
  id      TEXT PRIMARY KEY,
  name    TEXT NOT NULL,
  hash    BLOB NOT NULL UNIQUE,
  created BIGINT NOT NULL
);
CREATE TABLE v_products (
  id           TEXT PRIMARY KEY,
  name         TEXT NOT NULL,
  manufacturer TEXT NOT NULL,
  version      TEXT NOT NULL,
  features     TEXT NOT NULL,
  descriptions TEXT NOT NULL,
  data         TEXT NOT NULL,
  created      BIGINT NOT NULL
);
CREATE TABLE v_customers (
  id      TEXT PRIMARY KEY,
  name    TEXT NOT NULL,
  created BIGINT NOT NULL
);
CREATE TABLE v_enrollments (
  code_hash   BLOB PRIMARY KEY,
  customer_id TEXT NOT NULL REFERENCES v_customers(id),
  created     BIGINT NOT NULL,
  expires     BIGINT NOT NULL,
  used_by     TEXT,
  used_at     BIGINT
);
CREATE TABLE v_sites (
  id          TEXT PRIMARY KEY,
  customer_id TEXT NOT NULL REFERENCES v_customers(id),
  name        TEXT NOT NULL,
  cert        BLOB NOT NULL,
  certified   BIGINT NOT NULL
);
CREATE INDEX v_sites_customer ON v_sites(customer_id);
CREATE TABLE v_orders (
  id           TEXT PRIMARY KEY,
  customer_id  TEXT NOT NULL REFERENCES v_customers(id),
  product_id   TEXT NOT NULL REFERENCES v_products(id),
  platform     TEXT NOT NULL,
  quantity     BIGINT NOT NULL CHECK (quantity > 0),
  features     TEXT NOT NULL,
  first_active BIGINT,
  expires      BIGINT,
  created      BIGINT NOT NULL,
  pack_id      TEXT
);
CREATE INDEX v_orders_customer ON v_orders(customer_id);
CREATE TABLE v_packs (
  pack_id      TEXT PRIMARY KEY,
  order_id     TEXT NOT NULL UNIQUE REFERENCES v_orders(id),
  site_id      TEXT NOT NULL REFERENCES v_sites(id),
  begin_serial BIGINT NOT NULL,
  quantity     BIGINT NOT NULL,
  issued       BIGINT NOT NULL,
  file         BLOB NOT NULL
);
CREATE TABLE v_counters (
  name  TEXT PRIMARY KEY,
  value BIGINT NOT NULL
);
INSERT INTO v_counters (name, value) VALUES ('serial', 1);
