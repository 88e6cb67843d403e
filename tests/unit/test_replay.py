"""Routing replay lines: by field, keyed by message id; what cannot be routed is said."""
from __future__ import annotations

import pytest

from pipeline.core.config import load
from pipeline.ops.replay import route

S = load()


@pytest.mark.parametrize("line,topic,key,problem", [
    (b'{"message_id":"m","account_id":"a","message_class":"campaign","accepted_at":"2026-10-31T10:00:00Z"}',
     S.topic_accepted, b"m", None),
    (b'{"message_id":"m","ready_at":"2026-10-31T10:00:00Z"}', S.topic_ready, b"m", None),
    (b'{"message_id":"m","ready_at":"soon"}', S.topic_ready, b"m", "ready_at"),
    (b'{"ready_at":"2026-10-31T10:00:00Z"}', S.topic_ready, None, "missing field message_id"),
    (b'{"message_id":"m"}', None, None, "cannot route"),
    (b'not json', None, None, "invalid JSON"),
    (b'[1]', None, None, "expected a JSON object"),
    (b'{"account_id":"a-1","first_send_at":"2026-10-20T00:00:00Z","rate_limited":false}', S.topic_accounts,
     b"a-1", None),
    (b'{"account_id":"a-1","rate_limited":"yes"}', None, None, "account record: rate_limited"),
])
def test_each_line_goes_to_its_topic_or_is_reported(line: bytes, topic: str | None, key: bytes | None,
                                                    problem: str | None) -> None:
    got_topic, got_key, got_problem = route(S, line)
    assert (got_topic, got_key) == (topic, key)
    assert (got_problem is None) if problem is None else (problem in (got_problem or ""))
