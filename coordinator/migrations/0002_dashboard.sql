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

-- The projection's `executions` row of a dashboard run names its user and algorithm too
-- (the seed's AlgorithmExecution has both), whichever of the two rows is written first.
-- A convenience for readers of `executions`: the dashboard's own queries join
-- `dashboard_runs`, which is exact even if both rows were written at the same instant.
CREATE FUNCTION executions_attribute() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    run record;
BEGIN
    SELECT user_id, algorithm_id INTO run FROM dashboard_runs
    WHERE epoch = NEW.epoch AND submission_id = NEW.submission_id;
    IF FOUND THEN
        NEW.user_id := coalesce(NEW.user_id, run.user_id);
        NEW.algorithm_id := coalesce(NEW.algorithm_id, run.algorithm_id);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER executions_attribute BEFORE INSERT ON executions
    FOR EACH ROW EXECUTE FUNCTION executions_attribute();

CREATE FUNCTION dashboard_runs_attribute() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE executions SET user_id = coalesce(user_id, NEW.user_id), algorithm_id = coalesce(algorithm_id, NEW.algorithm_id)
    WHERE epoch = NEW.epoch AND submission_id = NEW.submission_id;
    RETURN NULL;
END $$;
CREATE TRIGGER dashboard_runs_attribute AFTER INSERT ON dashboard_runs
    FOR EACH ROW EXECUTE FUNCTION dashboard_runs_attribute();

-- A saved version may carry a note ("first try", "memoized").
ALTER TABLE code_versions ADD COLUMN note text NOT NULL DEFAULT '';
CREATE INDEX code_versions_user ON code_versions (user_id, algorithm_id, language, version);
