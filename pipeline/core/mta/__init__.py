"""MTA logs as sources (issue #19), pure: log-line timestamps, the mapping configuration, and the
per-queue-id state machines that turn Postfix and Exim log lines into `mta.accepted` and
`mta.queue_ready` events. No files, no Kafka: `pipeline/ops/ingest.py` follows the logs and produces
what these return."""
