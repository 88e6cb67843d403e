"""The domain, pure: events, the join, event time, exclusions, the SLA verdict, faults, availability,
the policy and the settings. Imports nothing from the other subpackages, nor Kafka, Faust or ClickHouse
(tests/unit/test_architecture.py)."""
