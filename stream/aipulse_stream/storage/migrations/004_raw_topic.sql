-- The source topic of each raw event. Offsets are per (topic, partition): a worker that
-- resumes after a crash skips the offsets already stored for ITS topic only, and the join
-- looks interactions up in the feedback's own topic and partition. Without it, a second
-- events topic in the same database (or a topic deleted and created again) would make a
-- worker skip new events as "already stored".
ALTER TABLE {db}.interactions ADD COLUMN IF NOT EXISTS _topic LowCardinality(String) DEFAULT '' AFTER attributes;
ALTER TABLE {db}.feedback ADD COLUMN IF NOT EXISTS _topic LowCardinality(String) DEFAULT '' AFTER comment;
ALTER TABLE {db}.evaluations ADD COLUMN IF NOT EXISTS _topic LowCardinality(String) DEFAULT '' AFTER label;
