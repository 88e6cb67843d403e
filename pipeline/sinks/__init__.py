"""Adapters to the outside: ClickHouse and Kafka."""
