-- Delayed jobs are claimed one by one (issue 16): a scheduler sets `claimed_until` before it runs a
-- job, so two schedulers (a deposed lease holder still running, say) never run one job twice.
ALTER TABLE scheduled_jobs ADD COLUMN claimed_until TEXT;
