-- A benchmark run as a whole (PERFORMANCE_BENCHMARK): its plan, every size's
-- measurements (repetitions included, for plots and re-fitting) and the fits. The
-- per-size rows of `benchmarks` (the seed's table) point at their run.
CREATE TABLE benchmark_runs (
    id              bigserial PRIMARY KEY,
    algorithm_id    bigint REFERENCES algorithms (id) ON DELETE SET NULL,
    algorithm_name  text NOT NULL,
    language        text NOT NULL,
    input_kind      text NOT NULL,
    seed            bigint NOT NULL,
    source_sha256   bytea NOT NULL,
    results         jsonb NOT NULL,   -- [{inputSize, executionTime, cpuTimes: [...], ...}]
    complexity      jsonb NOT NULL,   -- complexityAnalysis (time)
    memory          jsonb NOT NULL,   -- memoryAnalysis
    seed_method     jsonb NOT NULL,   -- the seed's method on the same measurements
    stopped_early   text,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX benchmark_runs_algorithm ON benchmark_runs (algorithm_name, created_at DESC);

ALTER TABLE benchmarks ADD COLUMN run_id bigint REFERENCES benchmark_runs (id) ON DELETE CASCADE;
CREATE INDEX benchmarks_run ON benchmarks (run_id);
