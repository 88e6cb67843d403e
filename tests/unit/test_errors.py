"""`first_line`: the one way an exception becomes a one-line error or log line."""
from __future__ import annotations

from pipeline.core.errors import first_line


def test_the_first_non_blank_line_cut_to_the_limit() -> None:
    assert first_line(ValueError("\n  bad thing\nTraceback ...")) == "bad thing"
    assert first_line(ValueError("x" * 500)) == "x" * 300
    assert first_line(ValueError("x" * 500), 200) == "x" * 200


def test_an_empty_or_blank_message_gives_the_type_name() -> None:
    assert first_line(TimeoutError()) == "TimeoutError"
    assert first_line(RuntimeError(" \n\u2028 ")) == "RuntimeError"
