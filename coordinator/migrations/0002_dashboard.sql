-- The dashboard's runs: who ran what through /api/execution and /api/testing. The judge
-- knows neither the user nor the algorithm of a function-style run, so the projection's
-- `executions` row is anonymous; this row, keyed by the same (epoch, submission id),
-- attributes it and keeps what only the API sees: the arguments, and the returned values,
-- which travel as live data and never enter the judge state machine. It is written when
-- the run is queued and completed by the API when the run ends; a run whose coordinator
-- died while it waited keeps no outcome here, and readers fall back to the `executions`
-- row the projection wrote exactly once.
CREATE TABLE dashboard_runs (
    id               bigserial PRIMARY KEY,
    epoch            bigint NOT NULL REFERENCES judge_epochs (id),
    submission_id    bigint NOT NULL,
    user_id          bigint REFERENCES users (id) ON DELETE CASCADE,
    algorithm_id     bigint NOT NULL REFERENCES algorithms (id) ON DELETE CASCADE,
    language         text NOT NULL,
    kind             text NOT NULL CHECK (kind IN ('EXECUTE', 'TEST')),
    source_sha256    bytea NOT NULL REFERENCES blobs (sha256),
    code_version_id  bigint REFERENCES code_versions (id) ON DELETE SET NULL,
    input            jsonb,            -- EXECUTE: the arguments
    result           jsonb,            -- EXECUTE: the returned value; TEST: one per test
    error            text,
    step_count       bigint NOT NULL DEFAULT 0,
    -- TEST runs: tests passed and run; the API writes them when the run ends, so
    -- progress and achievements need not wait for the projection.
    passed           integer,
    total            integer NOT NULL CHECK (total >= 1),
    cpu_us           bigint,           -- CPU time summed over the run's tests
    wall_us          bigint,           -- wall time summed over the run's tests
    peak_bytes       bigint,           -- the largest peak over the tests
    success          boolean,
    -- The outcome as the API saw it at the end of the run (as in `executions`).
    status           text CHECK (status IN ('PENDING', 'RUNNING', 'SUCCESS', 'ERROR', 'TIMEOUT', 'MEMORY_EXCEEDED')),
    verdict          text CHECK (verdict IN ('AC', 'WA', 'TLE', 'MLE', 'RE', 'OLE', 'CE', 'IE')),
    created_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    UNIQUE (epoch, submission_id)
);
CREATE INDEX dashboard_runs_user ON dashboard_runs (user_id, id);
CREATE INDEX dashboard_runs_algorithm ON dashboard_runs (algorithm_id, language);

-- A saved version may carry a note ("first try", "memoized").
ALTER TABLE code_versions ADD COLUMN note text NOT NULL DEFAULT '';
CREATE INDEX code_versions_user ON code_versions (user_id, algorithm_id, language, version);
