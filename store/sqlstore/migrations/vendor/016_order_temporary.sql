-- Temporary licenses per order (issue 12): how many temporary licenses the
-- order's pack allows its site (0: none) and their longest validity in days,
-- as the vendor set them ('licet vendor order add --temporary-licenses N
-- --temporary-days D'). Both NULL for an upgrade order, whose pack allows
-- none. Orders from before this column get what their packs were given:
-- max(1, quantity / 10) licenses of at most 60 days.
ALTER TABLE v_orders ADD COLUMN temporary_licenses BIGINT CHECK (temporary_licenses >= 0);
ALTER TABLE v_orders ADD COLUMN temporary_days INTEGER CHECK (temporary_days >= 0);
UPDATE v_orders SET temporary_licenses = CASE WHEN quantity >= 20 THEN quantity / 10 ELSE 1 END, temporary_days = 60
  WHERE upgrade_from_min IS NULL;
