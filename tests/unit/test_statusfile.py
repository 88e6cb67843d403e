"""The status files under run/ are written whole or not at all: one writer for all of them."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.stream.statusfile import write_json_atomic


def test_writes_the_document_creating_the_folder_and_leaves_no_tmp(tmp_path: Path) -> None:
    path = tmp_path / "run" / "join-7.json"
    write_json_atomic(path, {"pid": 7, "at": 1.5})
    write_json_atomic(path, {"pid": 7, "at": 2.5})
    assert json.loads(path.read_text()) == {"pid": 7, "at": 2.5}
    assert sorted(p.name for p in path.parent.iterdir()) == ["join-7.json"]


def test_a_document_json_cannot_hold_leaves_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "sink-1.json"
    write_json_atomic(path, {"written": 1})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"written": object()})
    assert json.loads(path.read_text()) == {"written": 1}
