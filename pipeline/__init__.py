"""mailsla: handling-time SLA pipeline for mail transfer agents (Kafka -> Faust -> ClickHouse)."""

__version__ = "0.1.0"
