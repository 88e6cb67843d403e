-- 002: exclusions, the monthly verdict views, account facts, maintenance windows, faults.
-- `{db}` is the database; `{tz}`, `{objective}`, `{intro_s}` and the `{surge_*}` numbers come
-- from the policy (pipeline/core/policy.yaml), so the views are re-created at every start.

ALTER TABLE {db}.handling_times_raw ADD COLUMN IF NOT EXISTS client_error String DEFAULT '' AFTER mta;
-- 'ahead' | 'behind' | '': an event timestamp the join did not trust (README: Event time)
ALTER TABLE {db}.handling_times_raw ADD COLUMN IF NOT EXISTS clock_suspect LowCardinality(String) DEFAULT '' AFTER clock_skew;

-- Account facts from the compacted topic mailsla.accounts (latest record per account wins).
CREATE TABLE IF NOT EXISTS {db}.accounts
(
    account_id     String,
    first_send_at  Nullable(DateTime64(3, 'UTC')),
    rate_limited   UInt8,
    updated_at     Nullable(DateTime64(3, 'UTC')),
    version        UInt64  -- the record's Kafka offset: one account is always in one partition
)
ENGINE = ReplacingMergeTree(version)
ORDER BY account_id;

-- Planned maintenance windows: from the policy file and `mailsla maintenance add`.
CREATE TABLE IF NOT EXISTS {db}.maintenance_windows
(
    window_id  String,
    start_at   DateTime64(3, 'UTC'),
    end_at     DateTime64(3, 'UTC'),
    reason     String,
    origin     LowCardinality(String),  -- 'policy' or 'cli'
    deleted    UInt8,
    version    UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY window_id;

-- Faults and alerts as they open, grow and resolve; one current row per fault.
CREATE TABLE IF NOT EXISTS {db}.faults
(
    fault_id       String,
    kind           LowCardinality(String),  -- semi_critical | burn_rate | oldest_pending
    severity       LowCardinality(String),  -- page | ticket (alerts), semi_critical (faults)
    message_class  LowCardinality(String),
    opened_at      DateTime64(3, 'UTC'),
    resolved_at    Nullable(DateTime64(3, 'UTC')),
    peak_share     Float64,
    delayed        UInt64,
    eligible       UInt64,
    last_event     LowCardinality(String),  -- opened | updated | resolved
    version        UInt64,
    written_at     DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(version)
ORDER BY fault_id;

-- Hours in which an account sent more than {surge_multiple} times its trailing hourly average
-- ({surge_baseline_hours} h before the hour) and at least {surge_min} messages: reason volume_surge.
-- Only once the account has a full baseline of history here: a replay that starts mid-stream,
-- or a new sender, has nothing to compare with and is never a surge.
CREATE OR REPLACE VIEW {db}.volume_surges AS
SELECT account_id, hour, messages, baseline_messages
FROM
(
    SELECT account_id, hour, messages,
           sum(messages) OVER (PARTITION BY account_id ORDER BY toUInt32(hour)
                               RANGE BETWEEN {surge_baseline_s} PRECEDING AND 1 PRECEDING) AS baseline_messages,
           min(hour) OVER (PARTITION BY account_id) AS first_hour
    FROM
    (
        SELECT account_id, toStartOfHour(accepted_at) AS hour, count() AS messages
        FROM {db}.handling_times_raw FINAL
        GROUP BY account_id, hour
    )
)
WHERE toUInt32(hour) - toUInt32(first_hour) >= {surge_baseline_s}  -- a full baseline of history, else no verdict
  AND baseline_messages > 0 AND messages >= {surge_min}
  AND messages * {surge_baseline_hours} > {surge_multiple} * baseline_messages;

-- What analysts query: one current row per message, with its exclusion reason ('' = eligible).
-- One reason per message, the first that applies in this order.
CREATE OR REPLACE VIEW {db}.handling_times AS
WITH (SELECT groupArray((start_at, end_at)) FROM {db}.maintenance_windows FINAL WHERE deleted = 0) AS windows
SELECT m.message_id AS message_id, m.account_id AS account_id, m.message_class AS message_class,
       m.priority AS priority, m.source AS source, m.mta AS mta, m.client_error AS client_error,
       m.accepted_at AS accepted_at, m.ready_at AS ready_at, m.handling_ms AS handling_ms,
       m.status AS status, m.verdict_at AS verdict_at, m.clock_skew AS clock_skew,
       m.clock_suspect AS clock_suspect, m.rev AS rev,
       multiIf(m.priority = 'low', 'low_priority',
               m.client_error != '', 'client_error',
               arrayExists(w -> m.accepted_at >= w.1 AND m.accepted_at < w.2, windows), 'maintenance',
               a.first_send_at IS NOT NULL AND m.accepted_at < a.first_send_at + INTERVAL {intro_s} SECOND,
                   'introductory_period',
               a.rate_limited = 1, 'rate_limited',
               v.hour IS NOT NULL, 'volume_surge',
               '') AS exclusion_reason,
       exclusion_reason != '' AS excluded
FROM {db}.handling_times_raw AS m FINAL
LEFT JOIN
(
    SELECT account_id, argMax(first_send_at, version) AS first_send_at, argMax(rate_limited, version) AS rate_limited
    FROM {db}.accounts GROUP BY account_id
) AS a ON a.account_id = m.account_id
LEFT JOIN
(
    SELECT account_id, toNullable(hour) AS hour FROM {db}.volume_surges
) AS v ON v.account_id = m.account_id AND v.hour = toStartOfHour(m.accepted_at)
SETTINGS join_use_nulls = 1;

-- The monthly verdict per account and class (months in {tz}): `mailsla sla` reads these views.
-- compliance = within / eligible, budget_remaining = allowed delayed (1 - target) * eligible - delayed.
CREATE OR REPLACE VIEW {db}.sla_monthly_by_account AS
SELECT month, account_id, message_class, n_total AS total, n_excluded AS excluded,
       n_excluded_low_priority AS excluded_low_priority,
       n_excluded_client_error AS excluded_client_error,
       n_excluded_maintenance AS excluded_maintenance,
       n_excluded_introductory_period AS excluded_introductory_period,
       n_excluded_rate_limited AS excluded_rate_limited,
       n_excluded_volume_surge AS excluded_volume_surge,
       n_total - n_excluded AS eligible, n_within AS within, n_delayed AS delayed,
       if(eligible = 0, 1.0, within / eligible) AS compliance,
       toFloat64({objective}) AS target,
       compliance >= target AS met,
       toInt64(floor(eligible * (1 - target) + 1e-9)) - toInt64(delayed) AS budget_remaining
FROM
(
    SELECT formatDateTime(accepted_at, '%Y-%m', '{tz}') AS month, account_id, message_class,
           count() AS n_total, countIf(excluded) AS n_excluded,
           countIf(exclusion_reason = 'low_priority') AS n_excluded_low_priority,
           countIf(exclusion_reason = 'client_error') AS n_excluded_client_error,
           countIf(exclusion_reason = 'maintenance') AS n_excluded_maintenance,
           countIf(exclusion_reason = 'introductory_period') AS n_excluded_introductory_period,
           countIf(exclusion_reason = 'rate_limited') AS n_excluded_rate_limited,
           countIf(exclusion_reason = 'volume_surge') AS n_excluded_volume_surge,
           countIf(NOT excluded AND status = 'on_time') AS n_within,
           countIf(NOT excluded AND status IN ('overdue', 'late', 'never_ready')) AS n_delayed
    FROM {db}.handling_times
    GROUP BY month, account_id, message_class
);

CREATE OR REPLACE VIEW {db}.sla_monthly AS
SELECT month, message_class, n_total AS total, n_excluded AS excluded,
       n_excluded_low_priority AS excluded_low_priority,
       n_excluded_client_error AS excluded_client_error,
       n_excluded_maintenance AS excluded_maintenance,
       n_excluded_introductory_period AS excluded_introductory_period,
       n_excluded_rate_limited AS excluded_rate_limited,
       n_excluded_volume_surge AS excluded_volume_surge,
       n_total - n_excluded AS eligible, n_within AS within, n_delayed AS delayed,
       if(eligible = 0, 1.0, within / eligible) AS compliance,
       toFloat64({objective}) AS target,
       compliance >= target AS met,
       toInt64(floor(eligible * (1 - target) + 1e-9)) - toInt64(delayed) AS budget_remaining
FROM
(
    SELECT month, message_class, sum(total) AS n_total, sum(excluded) AS n_excluded,
           sum(excluded_low_priority) AS n_excluded_low_priority,
           sum(excluded_client_error) AS n_excluded_client_error,
           sum(excluded_maintenance) AS n_excluded_maintenance,
           sum(excluded_introductory_period) AS n_excluded_introductory_period,
           sum(excluded_rate_limited) AS n_excluded_rate_limited,
           sum(excluded_volume_surge) AS n_excluded_volume_surge,
           sum(within) AS n_within, sum(delayed) AS n_delayed
    FROM {db}.sla_monthly_by_account
    GROUP BY month, message_class
);

-- The sink's write journal. A batch of message rows is one insert into handling_times_raw that
-- also runs the aggregate views; a crash (or a failed write) in the middle of that can leave rows
-- stored whose aggregate contribution is not. Each batch notes the minutes it touches first and
-- its completion after, and at start the sink rebuilds the minutes of unfinished batches from the
-- rows (pipeline/store/clickhouse.py: Store.recover).
CREATE TABLE IF NOT EXISTS {db}.sink_journal
(
    batch_id  String,
    minutes   Array(DateTime('UTC')),
    state     LowCardinality(String),  -- begin | done
    at        DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
ORDER BY batch_id
TTL toDateTime(at) + INTERVAL 7 DAY;
