-- One shrink batch on 30,000 members loaded since the last ANALYZE, as the job ran it
-- before and after issue 18 item 11 (docs/benchmarks.md, "Job batches on fresh data").
-- On an empty migrated database of its own:
--   python -c "from scripts.procs import migrated_database as m; m('dbname=segments_feed_plan host=127.0.0.1 user=postgres', fresh=True)"
--   psql -h 127.0.0.1 -U postgres -d segments_feed_plan -f bench/fresh_plans.sql
ALTER TABLE memberships SET (autovacuum_enabled = off);
ALTER TABLE users SET (autovacuum_enabled = off);
INSERT INTO users (id) SELECT generate_series(1, 60000);
INSERT INTO segments (name, salt, auto_percent) VALUES ('S', 'salt', 5);
INSERT INTO memberships (user_id, segment_id, source)
SELECT g, 1, 'auto' FROM generate_series(1, 60000, 2) g;
SELECT reltuples AS "memberships reltuples (-1: never analyzed)" FROM pg_class
WHERE relname = 'memberships';
-- Before: the batch joined, planner on its own.
BEGIN;
EXPLAIN (ANALYZE, TIMING OFF, SUMMARY ON) WITH seg AS (SELECT id, salt, (auto_percent * 100)::int AS threshold FROM segments WHERE id = 1 AND deleted_at IS NULL FOR SHARE),
batch AS (SELECT user_id FROM memberships WHERE segment_id = 1 AND user_id > 0 ORDER BY user_id LIMIT 1000),
changed AS (DELETE FROM memberships m USING batch b, seg
           WHERE m.segment_id = seg.id AND m.user_id = b.user_id AND m.source = 'auto'
             AND segment_bucket(seg.salt, m.user_id) >= greatest(500, seg.threshold)
           RETURNING m.user_id, m.segment_id, 'percent_change' AS reason, clock_timestamp() AS at, true AS event),
events AS (INSERT INTO history (user_id, segment_id, operation, reason, at) SELECT user_id, segment_id, 'remove', reason, at FROM changed WHERE event)
SELECT (SELECT max(user_id) FROM batch), (SELECT count(*) FROM batch), EXISTS (SELECT 1 FROM seg);
ROLLBACK;
BEGIN;
-- After: walk_in_key_order() and the batch's key range.
SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off;
EXPLAIN (ANALYZE, TIMING OFF, SUMMARY ON) WITH seg AS (SELECT id, salt, (auto_percent * 100)::int AS threshold FROM segments WHERE id = 1 AND deleted_at IS NULL FOR SHARE),
batch AS (SELECT user_id FROM memberships WHERE segment_id = 1 AND user_id > 0 ORDER BY user_id LIMIT 1000),
changed AS (DELETE FROM memberships m USING seg
           WHERE m.segment_id = 1 AND m.user_id > 0 AND m.user_id <= (SELECT max(user_id) FROM batch) AND m.source = 'auto'
             AND segment_bucket(seg.salt, m.user_id) >= greatest(500, seg.threshold)
           RETURNING m.user_id, m.segment_id, 'percent_change' AS reason, clock_timestamp() AS at, true AS event),
events AS (INSERT INTO history (user_id, segment_id, operation, reason, at) SELECT user_id, segment_id, 'remove', reason, at FROM changed WHERE event)
SELECT (SELECT max(user_id) FROM batch), (SELECT count(*) FROM batch), EXISTS (SELECT 1 FROM seg);
ROLLBACK;
