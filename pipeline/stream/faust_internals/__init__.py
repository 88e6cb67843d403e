"""Everything that depends on faust-streaming internals."""
