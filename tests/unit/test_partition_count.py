"""The one line a grown keyed topic gets (issue #20): which topic, how many, what to read."""
from dataclasses import replace

from pipeline.core import config
from pipeline.stream.kafka import partitions_changed


def test_a_keyed_topic_with_another_partition_count_is_named_with_both_counts() -> None:
    s = replace(config.load(), partitions=8)
    assert partitions_changed(s, {"a": 8, "b": 8}) is None
    line = partitions_changed(s, {"a": 8, "b": 12})
    assert line is not None and line.startswith("topic b has 12 partitions, MAILSLA_PARTITIONS is 8:")
    assert "Scaling out" in line and "\n" not in line
    assert "at least 9" in (partitions_changed(s, {"a": 9}, at_least=True) or "")
    assert partitions_changed(s, {"a": 0}) is None  # a topic still being created: no count yet
