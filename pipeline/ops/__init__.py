"""Operating the pipeline: local Kafka, demo, bench, generator, replay, facts (accounts and
maintenance), the customer report, the process supervisor and the container health check."""
