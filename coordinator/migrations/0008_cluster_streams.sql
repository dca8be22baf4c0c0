-- One projection stream per raft cluster: every coordinator of a cluster that shares this
-- database projects into the stream named by the cluster id its log carries (see
-- store/projection.rs), so each judging is written once, whichever node leads. Streams
-- of older coordinator runs keep a NULL cluster.
ALTER TABLE judge_epochs ADD COLUMN cluster text UNIQUE;
