-- Plans of N seconds of use (licet vendor plan add --seconds N): for short
-- demos and tests, and for sales by the minute. Migration 005's CHECK on
-- v_payg_plans.kind cannot be widened by SQL both SQLite and PostgreSQL run
-- (SQLite rebuilds the table for it, and v_payg_sales refers to it), so a
-- plan of seconds is stored as kind 'hours', quantity 0, with its seconds
-- here; every other plan has 0 here.
ALTER TABLE v_payg_plans ADD COLUMN seconds BIGINT NOT NULL DEFAULT 0 CHECK (seconds >= 0);
