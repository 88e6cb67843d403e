"""ClickHouse: the client (embedded chDB or a server), the DDL and cluster DDL, ad-hoc SQL with
limits, the owner's local /sql API and its guard, and the read paths the commands use."""
