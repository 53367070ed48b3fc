-- Upgrade orders (issue: license upgrades): the range of product versions
-- each seat upgrades from; both NULL for an order of new seats.
ALTER TABLE v_orders ADD COLUMN upgrade_from_min TEXT;
ALTER TABLE v_orders ADD COLUMN upgrade_from_max TEXT;
