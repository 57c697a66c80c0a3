-- The events table. ReplacingMergeTree ordered by (project, day, event,
-- hash of distinct_id, uuid): a replayed event (same uuid, same fields) has the
-- same key and collapses on merge; queries deduplicate by uuid until then.
-- DateTime holds seconds (ClickHouse 18.16 has no DateTime64); timestamp_ms
-- keeps the full millisecond event time for ordering within a second.
CREATE TABLE IF NOT EXISTS {db}.events
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
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(timestamp)
ORDER BY (project_id, toDate(timestamp), event, cityHash64(distinct_id), uuid)
SETTINGS index_granularity = 8192
