-- A benchmark's input generator per algorithm (a program that prints the input of a
-- given size; see analytics::benchmark), written by setters like the reference solutions.
CREATE TABLE algorithm_generators (
    algorithm_id   bigint PRIMARY KEY REFERENCES algorithms (id) ON DELETE CASCADE,
    language       text NOT NULL,
    source_sha256  bytea NOT NULL REFERENCES blobs (sha256)
);
