-- 001: handling-time rows, per-minute aggregates, orphans.
-- Applied idempotently at start by pipeline.store.clickhouse.migrate(); `{db}` is the database.
-- Every table is created IF NOT EXISTS so re-running is harmless.

CREATE TABLE IF NOT EXISTS {db}.handling_times_raw
(
    message_id     String,
    account_id     String,
    message_class  LowCardinality(String),
    priority       LowCardinality(String),
    source         LowCardinality(String),
    mta            String,
    accepted_at    DateTime64(3, 'UTC'),
    ready_at       Nullable(DateTime64(3, 'UTC')),
    handling_ms    Nullable(UInt64),
    status         LowCardinality(String),
    verdict_at     DateTime64(3, 'UTC'),
    clock_skew     UInt8,
    rev            UInt32,
    -- what this revision contributes to the aggregates, and what the revision
    -- it replaces contributed: the materialized views add one and retract the
    -- other, so the aggregates always equal the current rows (see store/clickhouse.py)
    c_minute       DateTime('UTC'),
    c_n            Int8,
    c_within       Int8,
    c_delayed      Int8,
    c_latency      Int8,
    p_minute       DateTime('UTC'),
    p_n            Int8,
    p_within       Int8,
    p_delayed      Int8,
    written_at     DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(rev)
ORDER BY message_id;

-- What analysts query: one current row per message.
CREATE VIEW IF NOT EXISTS {db}.handling_times AS
SELECT message_id, account_id, message_class, priority, source, mta, accepted_at, ready_at,
       handling_ms, status, verdict_at, clock_skew, rev
FROM {db}.handling_times_raw FINAL;

-- Per minute of verdict time, per class and account. Counts are exact; latency is a t-digest.
CREATE TABLE IF NOT EXISTS {db}.handling_minutely_account
(
    minute         DateTime('UTC'),
    message_class  LowCardinality(String),
    account_id     String,
    messages       SimpleAggregateFunction(sum, Int64),
    within         SimpleAggregateFunction(sum, Int64),
    delayed        SimpleAggregateFunction(sum, Int64),
    latency        AggregateFunction(quantilesTDigest(0.5, 0.9, 0.99, 0.999), UInt64)
)
ENGINE = AggregatingMergeTree
ORDER BY (message_class, minute, account_id);

CREATE TABLE IF NOT EXISTS {db}.handling_minutely
(
    minute         DateTime('UTC'),
    message_class  LowCardinality(String),
    messages       SimpleAggregateFunction(sum, Int64),
    within         SimpleAggregateFunction(sum, Int64),
    delayed        SimpleAggregateFunction(sum, Int64),
    latency        AggregateFunction(quantilesTDigest(0.5, 0.9, 0.99, 0.999), UInt64)
)
ENGINE = AggregatingMergeTree
ORDER BY (message_class, minute);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.handling_minutely_account_mv
TO {db}.handling_minutely_account AS
SELECT c.1 AS minute, message_class, account_id,
       sum(c.2) AS messages, sum(c.3) AS within, sum(c.4) AS delayed,
       quantilesTDigestStateIf(0.5, 0.9, 0.99, 0.999)(assumeNotNull(handling_ms), c.5 = 1) AS latency
FROM {db}.handling_times_raw
ARRAY JOIN [(p_minute, -toInt64(p_n), -toInt64(p_within), -toInt64(p_delayed), toInt8(0)),
            (c_minute, toInt64(c_n), toInt64(c_within), toInt64(c_delayed), c_latency)] AS c
WHERE c.2 != 0 OR c.5 = 1
GROUP BY minute, message_class, account_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.handling_minutely_mv
TO {db}.handling_minutely AS
SELECT c.1 AS minute, message_class,
       sum(c.2) AS messages, sum(c.3) AS within, sum(c.4) AS delayed,
       quantilesTDigestStateIf(0.5, 0.9, 0.99, 0.999)(assumeNotNull(handling_ms), c.5 = 1) AS latency
FROM {db}.handling_times_raw
ARRAY JOIN [(p_minute, -toInt64(p_n), -toInt64(p_within), -toInt64(p_delayed), toInt8(0)),
            (c_minute, toInt64(c_n), toInt64(c_within), toInt64(c_delayed), c_latency)] AS c
WHERE c.2 != 0 OR c.5 = 1
GROUP BY minute, message_class;

-- Queue-ready events with no accepted event within the grace; never in SLA counts.
CREATE TABLE IF NOT EXISTS {db}.orphan_events_raw
(
    message_id  String,
    ready_at    DateTime64(3, 'UTC'),
    first_seen  DateTime64(3, 'UTC'),
    resolved    UInt8,
    rev         UInt32
)
ENGINE = ReplacingMergeTree(rev)
ORDER BY message_id;

CREATE VIEW IF NOT EXISTS {db}.orphan_events AS
SELECT message_id, ready_at, first_seen, resolved FROM {db}.orphan_events_raw FINAL;
