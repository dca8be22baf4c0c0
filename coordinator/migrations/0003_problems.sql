-- Contest problems imported from Kattis/ICPC packages: metadata as JSON (limits, scoring,
-- groups, checker; see contest::ProblemMeta), tests and the validator as blobs.

CREATE TABLE problems (
    id                bigserial PRIMARY KEY,
    slug              text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9_-]{0,63}$'),
    name              text NOT NULL,
    meta              jsonb NOT NULL,
    validator         jsonb,
    validator_sha256  bytea REFERENCES blobs (sha256),
    created_by        bigint REFERENCES users (id) ON DELETE SET NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CHECK ((validator IS NULL) = (validator_sha256 IS NULL))
);

CREATE TABLE problem_tests (
    problem_id     bigint NOT NULL REFERENCES problems (id) ON DELETE CASCADE,
    ordinal        integer NOT NULL CHECK (ordinal >= 0),
    name           text NOT NULL,
    group_index    integer NOT NULL CHECK (group_index >= 0),
    sample         boolean NOT NULL,
    input_sha256   bytea NOT NULL REFERENCES blobs (sha256),
    answer_sha256  bytea NOT NULL REFERENCES blobs (sha256),
    PRIMARY KEY (problem_id, ordinal)
);

-- A rejudged submission completes again: each judging is its own history row.
ALTER TABLE executions ADD COLUMN judging integer NOT NULL DEFAULT 0 CHECK (judging >= 0);
ALTER TABLE executions DROP CONSTRAINT executions_epoch_submission_id_key;
ALTER TABLE executions ADD CONSTRAINT executions_epoch_submission_id_judging_key UNIQUE (epoch, submission_id, judging);
