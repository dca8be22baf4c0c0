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
