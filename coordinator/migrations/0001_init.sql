-- The store's first schema: catalog, users and tokens, content-addressed blobs, history,
-- and the projection position. Enumerations are text with CHECK constraints (names as in
-- the seed's Prisma enums) rather than PostgreSQL enum types, so later migrations can
-- widen them inside a transaction.

CREATE TABLE users (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    email       text UNIQUE,
    role        text NOT NULL CHECK (role IN ('admin', 'setter', 'user')),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Only the sha256 of a token is kept: tokens are 32 random bytes, so a plain hash is as
-- good as a slow one, and a leaked table yields no usable token.
CREATE TABLE api_tokens (
    id            bigserial PRIMARY KEY,
    user_id       bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_sha256  bytea NOT NULL UNIQUE CHECK (length(token_sha256) = 32),
    label         text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz
);

-- Test data and source code, stored once per content (agents can cache by hash).
CREATE TABLE blobs (
    sha256      bytea PRIMARY KEY CHECK (length(sha256) = 32),
    content     bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE algorithms (
    id                bigserial PRIMARY KEY,
    slug              text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9_-]{0,63}$'),
    name              text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    description       text NOT NULL,
    difficulty        text NOT NULL CHECK (difficulty IN ('EASY', 'MEDIUM', 'HARD', 'EXPERT')),
    category          text NOT NULL CHECK (category IN ('ARRAYS', 'STRINGS', 'LINKED_LISTS', 'TREES', 'GRAPHS',
                          'DYNAMIC_PROGRAMMING', 'GREEDY', 'BACKTRACKING', 'SORTING', 'SEARCHING', 'MATH',
                          'BIT_MANIPULATION')),
    time_complexity   text NOT NULL,
    space_complexity  text NOT NULL,
    tags              text[] NOT NULL DEFAULT '{}',
    hints             text[] NOT NULL DEFAULT '{}',   -- in the order they are revealed
    solution          text NOT NULL DEFAULT '',       -- the approach, in words
    tutorial          text NOT NULL DEFAULT '',
    entry_point       text NOT NULL CHECK (entry_point ~ '^[A-Za-z_][A-Za-z0-9_]*$'),
    created_by        bigint REFERENCES users (id) ON DELETE SET NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX algorithms_tags ON algorithms USING gin (tags);
CREATE INDEX algorithms_category_difficulty ON algorithms (category, difficulty);

-- Reference solutions, one per language, shown to admins.
CREATE TABLE reference_solutions (
    algorithm_id   bigint NOT NULL REFERENCES algorithms (id) ON DELETE CASCADE,
    language       text NOT NULL,
    source_sha256  bytea NOT NULL REFERENCES blobs (sha256),
    PRIMARY KEY (algorithm_id, language)
);

-- Function-style tests: JSON arguments and the expected JSON result, as blobs.
CREATE TABLE test_cases (
    id               bigserial PRIMARY KEY,
    algorithm_id     bigint NOT NULL REFERENCES algorithms (id) ON DELETE CASCADE,
    ordinal          integer NOT NULL CHECK (ordinal >= 0),
    input_sha256     bytea NOT NULL REFERENCES blobs (sha256),
    expected_sha256  bytea NOT NULL REFERENCES blobs (sha256),
    sample           boolean NOT NULL DEFAULT false,
    UNIQUE (algorithm_id, ordinal)
);

-- Which catalog entries shipped with the binary were seeded, so one an admin deleted is
-- not brought back at the next start.
CREATE TABLE catalog_seeded (
    slug        text PRIMARY KEY,
    seeded_at   timestamptz NOT NULL DEFAULT now()
);

-- Saved solutions, versioned per (user, algorithm, language).
CREATE TABLE code_versions (
    id             bigserial PRIMARY KEY,
    user_id        bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    algorithm_id   bigint NOT NULL REFERENCES algorithms (id) ON DELETE CASCADE,
    language       text NOT NULL,
    version        integer NOT NULL CHECK (version >= 1),
    source_sha256  bytea NOT NULL REFERENCES blobs (sha256),
    created_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, algorithm_id, language, version)
);

-- One row per coordinator run. Judge submission ids restart at 1 with each run (the
-- judge state is in memory until the raft log lands), so (epoch, submission id) is the
-- key of a finished submission.
CREATE TABLE judge_epochs (
    id          bigserial PRIMARY KEY,
    started_at  timestamptz NOT NULL DEFAULT now()
);

-- The last position applied from each stream of completions (today: one stream per
-- epoch; with raft: the log, position = index). Written in the same transaction as the
-- rows it stands for, which is what makes the projection exactly-once.
CREATE TABLE projection (
    stream      bigint PRIMARY KEY REFERENCES judge_epochs (id),
    position    bigint NOT NULL CHECK (position >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- History: every finished submission (the seed's AlgorithmExecution).
CREATE TABLE executions (
    id             bigserial PRIMARY KEY,
    epoch          bigint NOT NULL REFERENCES judge_epochs (id),
    submission_id  bigint NOT NULL,
    user_id        bigint REFERENCES users (id) ON DELETE SET NULL,
    algorithm_id   bigint REFERENCES algorithms (id) ON DELETE SET NULL,
    language       text NOT NULL,
    source_sha256  bytea NOT NULL REFERENCES blobs (sha256),
    status         text NOT NULL CHECK (status IN ('PENDING', 'RUNNING', 'SUCCESS', 'ERROR', 'TIMEOUT',
                       'MEMORY_EXCEEDED')),
    verdict        text CHECK (verdict IN ('AC', 'WA', 'TLE', 'MLE', 'RE', 'OLE', 'CE', 'IE')),
    message        text NOT NULL DEFAULT '',
    cpu_us         bigint,     -- the largest over the tests
    wall_us        bigint,
    peak_bytes     bigint,
    steps          bigint NOT NULL DEFAULT 0,
    error          text,
    accepted_at    timestamptz,
    finished_at    timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (epoch, submission_id)
);
CREATE INDEX executions_user ON executions (user_id, created_at);
CREATE INDEX executions_algorithm ON executions (algorithm_id, language);

CREATE TABLE test_results (
    execution_id  bigint NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
    ordinal       integer NOT NULL,
    verdict       text NOT NULL,
    limit_hit     text,
    cpu_us        bigint NOT NULL,
    wall_us       bigint NOT NULL,
    peak_bytes    bigint NOT NULL,
    exit_code     integer,
    signal        integer,
    stdout        text NOT NULL DEFAULT '',
    stderr        text NOT NULL DEFAULT '',
    message       text NOT NULL DEFAULT '',
    PRIMARY KEY (execution_id, ordinal)
);

CREATE TABLE benchmarks (
    id              bigserial PRIMARY KEY,
    algorithm_id    bigint REFERENCES algorithms (id) ON DELETE SET NULL,
    algorithm_name  text NOT NULL,
    language        text NOT NULL,
    input_size      integer NOT NULL CHECK (input_size >= 0),
    cpu_us          double precision NOT NULL,   -- average
    peak_bytes      double precision NOT NULL,   -- average
    complexity      text,
    confidence      double precision,
    samples         integer NOT NULL DEFAULT 1 CHECK (samples >= 1),
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE user_progress (
    user_id          bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    algorithm_id     bigint NOT NULL REFERENCES algorithms (id) ON DELETE CASCADE,
    status           text NOT NULL CHECK (status IN ('NOT_STARTED', 'IN_PROGRESS', 'COMPLETED', 'MASTERED')),
    attempts         integer NOT NULL DEFAULT 0,
    best_cpu_us      bigint,
    best_peak_bytes  bigint,
    completed_at     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, algorithm_id)
);

CREATE TABLE achievements (
    id           bigserial PRIMARY KEY,
    user_id      bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    type         text NOT NULL CHECK (type IN ('FIRST_SOLUTION', 'PERFORMANCE_CHAMPION', 'COMPLEXITY_MASTER',
                     'STREAK_KEEPER', 'ALGORITHM_EXPLORER', 'OPTIMIZATION_GURU')),
    title        text NOT NULL,
    description  text NOT NULL,
    points       integer NOT NULL DEFAULT 0,
    unlocked_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, type)
);
