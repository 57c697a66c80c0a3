-- The events table. ReplacingMergeTree ordered by (project, day, event,
-- hash of distinct_id, uuid): a replayed event (same uuid, same fields) has the
-- same key and collapses on merge; queries deduplicate by uuid until then.
-- DateTime holds seconds (ClickHouse 18.16 has no DateTime64); timestamp_ms
-- keeps the full millisecond event time for ordering within a second.
-- On a cluster this is `events_local` on every node (replicated where shards
-- have replicas), and `events` is a Distributed table over it (0001 has a
-- second statement then, made in schema/mod.rs).
CREATE TABLE IF NOT EXISTS {db}.{events}
(
    uuid UUID,
    project_id UInt64,
    event String,
    distinct_id String,
    properties String,
    timestamp DateTime,
    timestamp_ms UInt64,
    received_at DateTime,
    ip String,
    lib String,
    lib_version String,
    inserted_at DateTime DEFAULT now()
)
ENGINE = {engine}
PARTITION BY toYYYYMM(timestamp)
ORDER BY (project_id, toDate(timestamp), event, cityHash64(distinct_id), uuid)
SETTINGS index_granularity = 8192
