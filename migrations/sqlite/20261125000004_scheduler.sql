-- The scheduler's bookkeeping (docs/adr/0005-bus-and-background-work.md): when each periodic job last
-- ran (so a run missed during downtime is caught up once, not once per missed period), and delayed
-- jobs with their due time, attempts and outcome.
CREATE TABLE scheduler_runs (
    job         TEXT PRIMARY KEY,
    last_run_at TEXT NOT NULL
);

CREATE TABLE scheduled_jobs (
    id       TEXT PRIMARY KEY,
    kind     TEXT NOT NULL,
    payload  TEXT NOT NULL,
    due_at   TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    done_at  TEXT,
    error    TEXT
);
CREATE INDEX scheduled_jobs_due ON scheduled_jobs (done_at, due_at);
