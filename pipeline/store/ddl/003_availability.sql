-- 003: availability beside handling time (issue #12): injection attempts, probe checks, and the
-- views that turn them into unavailable seconds, probe incidents and monthly numbers.
-- Duplicates are absorbed by the views (GROUP BY the identity, a deterministic pick among copies),
-- not by merges, so every query is exact and a replay in any order gives the same numbers.

-- mta.injections: one row per record; the same attempt_id twice is one attempt.
CREATE TABLE IF NOT EXISTS {db}.injections_raw
(
    attempt_id  String,
    at          DateTime64(3, 'UTC'),
    channel     LowCardinality(String),  -- api | smtp
    outcome     LowCardinality(String),  -- ok | client_error | server_error | timeout
    account_id  String,                  -- '' when the record had none
    written_at  DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY attempt_id;

-- mailsla.probes: one row per record; the same (target, location, at) twice is one check.
CREATE TABLE IF NOT EXISTS {db}.probes_raw
(
    target      String,
    location    String,                  -- '' when the record had none
    at          DateTime64(3, 'UTC'),
    ok          UInt8,
    latency_ms  Nullable(Float64),
    written_at  DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (target, location, at);

-- One row per attempt. Copies of one attempt that disagree: the greatest (at, channel, outcome,
-- account_id) wins, whatever order they arrived in.
CREATE OR REPLACE VIEW {db}.injections AS
SELECT attempt_id, r.1 AS at, r.2 AS channel, r.3 AS outcome, r.4 AS account_id
FROM
(
    SELECT attempt_id, max(tuple(at, toString(channel), toString(outcome), account_id)) AS r
    FROM {db}.injections_raw
    GROUP BY attempt_id
);

-- One row per check. Copies of one check that disagree: a failed one wins.
CREATE OR REPLACE VIEW {db}.probe_checks AS
SELECT target, location, at, min(ok) AS ok, max(latency_ms) AS latency_ms
FROM {db}.probes_raw
GROUP BY target, location, at;

-- The maintenance windows with overlapping ones merged: [start_at, end_at).
CREATE OR REPLACE VIEW {db}.maintenance_merged AS
SELECT min(start_at) AS start_at, max(end_at) AS end_at
FROM
(
    SELECT start_at, end_at, sum(is_new) OVER (ORDER BY start_at, end_at ROWS UNBOUNDED PRECEDING) AS grp
    FROM
    (
        SELECT start_at, end_at,
               toUInt8(start_at > max(end_at) OVER (ORDER BY start_at, end_at
                                                    ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)) AS is_new
        FROM {db}.maintenance_windows FINAL
        WHERE deleted = 0
    )
)
GROUP BY grp;

-- Per channel and UTC second with attempts: unavailable = every attempt failed (server_error or
-- timeout; client_error is an answer); maintenance = the second starts inside a window (such
-- seconds are not counted at all). Seconds without attempts are available and have no row.
CREATE OR REPLACE VIEW {db}.availability_seconds AS
WITH (SELECT groupArray(tuple(start_at, end_at)) FROM {db}.maintenance_merged) AS windows
SELECT channel, second, formatDateTime(second, '%Y-%m', '{tz}') AS month, attempts, failed,
       toUInt8(failed = attempts) AS unavailable,
       toUInt8(arrayExists(w -> second >= w.1 AND second < w.2, windows)) AS maintenance
FROM
(
    SELECT channel, toStartOfSecond(at) AS second, count() AS attempts,
           countIf(outcome IN ('server_error', 'timeout')) AS failed
    FROM {db}.injections
    GROUP BY channel, second
);

-- The same per account: a second is unavailable for an account when all of its attempts failed.
CREATE OR REPLACE VIEW {db}.availability_seconds_by_account AS
WITH (SELECT groupArray(tuple(start_at, end_at)) FROM {db}.maintenance_merged) AS windows
SELECT account_id, channel, second, formatDateTime(second, '%Y-%m', '{tz}') AS month, attempts, failed,
       toUInt8(failed = attempts) AS unavailable,
       toUInt8(arrayExists(w -> second >= w.1 AND second < w.2, windows)) AS maintenance
FROM
(
    SELECT account_id, channel, toStartOfSecond(at) AS second, count() AS attempts,
           countIf(outcome IN ('server_error', 'timeout')) AS failed
    FROM {db}.injections
    GROUP BY account_id, channel, second
);

-- Maintenance seconds per month ({tz}): seconds whose start lies in a (merged) window.
CREATE OR REPLACE VIEW {db}.maintenance_monthly AS
SELECT formatDateTime(toDateTime(s, 'UTC'), '%Y-%m', '{tz}') AS month, count() AS maintenance_s
FROM
(
    SELECT arrayJoin(range(toUInt32(ceil(toUnixTimestamp64Milli(start_at) / 1000)),
                           toUInt32(ceil(toUnixTimestamp64Milli(end_at) / 1000)))) AS s
    FROM {db}.maintenance_merged
)
GROUP BY month;

-- Per month and channel (api, smtp, and `any`: seconds in which at least one channel was
-- unavailable): attempts and failed attempts outside maintenance, unavailable seconds.
CREATE OR REPLACE VIEW {db}.availability_monthly AS
SELECT month, channel, sum(attempts) AS attempts, sum(failed) AS failed, countIf(unavailable = 1) AS unavailable_s
FROM {db}.availability_seconds
WHERE maintenance = 0
GROUP BY month, channel
UNION ALL
SELECT month, 'any' AS channel, sum(attempts) AS attempts, sum(failed) AS failed,
       uniqExactIf(second, unavailable = 1) AS unavailable_s
FROM {db}.availability_seconds
WHERE maintenance = 0
GROUP BY month;

CREATE OR REPLACE VIEW {db}.availability_monthly_by_account AS
SELECT month, account_id, channel, sum(attempts) AS attempts, sum(failed) AS failed,
       countIf(unavailable = 1) AS unavailable_s
FROM {db}.availability_seconds_by_account
WHERE maintenance = 0
GROUP BY month, account_id, channel
UNION ALL
SELECT month, account_id, 'any' AS channel, sum(attempts) AS attempts, sum(failed) AS failed,
       uniqExactIf(second, unavailable = 1) AS unavailable_s
FROM {db}.availability_seconds_by_account
WHERE maintenance = 0
GROUP BY month, account_id;

-- Runs of consecutive unavailable seconds (maintenance seconds excluded) per channel: outages.
CREATE OR REPLACE VIEW {db}.availability_outages AS
SELECT channel, min(second) AS first_second, max(second) AS last_second, count() AS seconds
FROM
(
    SELECT channel, second,
           toInt64(toUnixTimestamp(second)) - toInt64(row_number() OVER (PARTITION BY channel ORDER BY second)) AS grp
    FROM {db}.availability_seconds
    WHERE unavailable = 1 AND maintenance = 0
)
GROUP BY channel, grp;

-- Probe incidents: per target, checks ordered by (at, location); each run of two or more
-- consecutive failed checks is one incident from its first to its last failed check.
-- second_failed_at: when the incident became known (a critical fault opens then); next_ok_at:
-- the check after the run (always ok; the fault resolves then), NULL while none came yet.
CREATE OR REPLACE VIEW {db}.probe_incidents AS
SELECT target, min(at) AS first_failed_at, max(at) AS last_failed_at, count() AS failed_checks,
       arraySort(groupArray(tuple(at, location)))[2].1 AS second_failed_at,
       toUnixTimestamp64Milli(last_failed_at) - toUnixTimestamp64Milli(first_failed_at) AS downtime_ms,
       nullIf(argMax(next_at, tuple(at, location)), toDateTime64(0, 3, 'UTC')) AS next_ok_at
FROM
(
    SELECT target, location, at, ok,
           row_number() OVER (PARTITION BY target ORDER BY at, location)
             - row_number() OVER (PARTITION BY target, ok ORDER BY at, location) AS grp,
           leadInFrame(at) OVER (PARTITION BY target ORDER BY at, location
                                 ROWS BETWEEN CURRENT ROW AND 1 FOLLOWING) AS next_at
    FROM {db}.probe_checks
)
WHERE ok = 0
GROUP BY target, grp
HAVING count() >= 2;

-- Per month ({tz}) and probe target: checks and failed checks with `at` in the month, incidents
-- overlapping it and their downtime clipped to the month without the (merged) maintenance time
-- inside it (an incident ending exactly at a month's first instant belongs to the month before).
-- availability = 1 - downtime_ms / 1000 / measured_s, as `mailsla availability` computes it.
CREATE OR REPLACE VIEW {db}.probe_monthly AS
WITH (SELECT groupArray(tuple(toUnixTimestamp64Milli(start_at), toUnixTimestamp64Milli(end_at)))
      FROM {db}.maintenance_merged) AS windows
SELECT month, target, sum(checks) AS checks, sum(failed) AS failed, sum(incidents) AS incidents,
       sum(downtime_ms) AS downtime_ms
FROM
(
    SELECT formatDateTime(at, '%Y-%m', '{tz}') AS month, target, count() AS checks, countIf(ok = 0) AS failed,
           0 AS incidents, toInt64(0) AS downtime_ms
    FROM {db}.probe_checks
    GROUP BY month, target
    UNION ALL
    SELECT month, target, 0 AS checks, 0 AS failed, 1 AS incidents,
           toInt64(greatest(0, hi - lo) - arraySum(arrayMap(w -> greatest(0, least(hi, w.2) - greatest(lo, w.1)),
                                                            windows))) AS downtime_ms
    FROM
    (
        SELECT target, f, l, formatDateTime(m, '%Y-%m', '{tz}') AS month,
               toUnixTimestamp(toDateTime(m, '{tz}')) * 1000 AS ms_start,
               toUnixTimestamp(toDateTime(addMonths(m, 1), '{tz}')) * 1000 AS ms_end,
               greatest(f, ms_start) AS lo, least(l, ms_end) AS hi
        FROM
        (
            SELECT target, toUnixTimestamp64Milli(first_failed_at) AS f, toUnixTimestamp64Milli(last_failed_at) AS l,
                   arrayJoin(arrayMap(i -> addMonths(toStartOfMonth(first_failed_at, '{tz}'), i),
                                      range(toUInt32(dateDiff('month', toStartOfMonth(first_failed_at, '{tz}'),
                                                                       toStartOfMonth(last_failed_at, '{tz}')) + 1)))) AS m
            FROM {db}.probe_incidents
        )
    )
    WHERE f < ms_end AND l >= ms_start AND (hi > lo OR (f >= ms_start AND f < ms_end))
)
GROUP BY month, target;
