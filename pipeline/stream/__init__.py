"""Kafka and Faust: the Kafka adapter, the Faust app and its join runtime, input offsets, the
ClickHouse sink (results topic -> store), the workers' status files. Faust internals live only in
`faust_internals`."""
