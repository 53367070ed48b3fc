-- When the vendor acknowledged a usage report (issue 12): an online upload
-- or renewal that the vendor answered. A renewal carries the reports not
-- acknowledged yet, so that those the vendor missed close its chain.
ALTER TABLE s_usage_reports ADD COLUMN acknowledged BIGINT;
