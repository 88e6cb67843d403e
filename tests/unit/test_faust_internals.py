"""Faust internals live in one place (pipeline/stream/faust_internals) and still exist in the
installed faust-streaming: an upgrade that drops or renames one fails here, not in a worker."""
from __future__ import annotations

import ast
from importlib.metadata import version
from pathlib import Path

import pytest

from pipeline.stream.faust_internals import (AIOKAFKA_PRIVATE, FAUST_VERSION, MODE_VERSION, PRIVATE_ATTRIBUTES,
                                             Internal)

PIPELINE = Path(__file__).resolve().parents[2] / "pipeline"
INTERNALS = PIPELINE / "stream" / "faust_internals"


def test_the_installed_faust_is_the_one_the_list_was_checked_against() -> None:
    assert version("faust-streaming") == FAUST_VERSION, "re-check PRIVATE_ATTRIBUTES, then update FAUST_VERSION"
    assert version("mode-streaming") == MODE_VERSION, "re-check PRIVATE_ATTRIBUTES, then update MODE_VERSION"


@pytest.mark.parametrize("item", PRIVATE_ATTRIBUTES + AIOKAFKA_PRIVATE, ids=lambda i: f"{i.owner}.{i.name}")
def test_every_private_attribute_we_use_still_exists(item: Internal) -> None:
    assert item.present(), f"{item.owner}.{item.name} is gone: {item.used_in} works around: {item.why}"
    assert item.why and item.test and item.used_in


def test_the_check_fails_for_an_attribute_that_is_not_there_and_sees_instance_attributes() -> None:
    assert not Internal("faust.transport.consumer:Consumer", "_no_such_attribute", "", "", "").present()
    assert not Internal("faust.no_such_module", "_x", "", "", "").present()
    # `_read_offset` is assigned in Consumer.__init__, not a class attribute: found in the source
    item = Internal("faust.transport.consumer:Consumer", "_read_offset", "", "", "")
    assert not hasattr(item.resolve(), "_read_offset") and item.present()


def _outside_uses(path: Path, private: set[str]) -> list[str]:
    """Private Faust/mode names used by a module: attributes from the list, `_names` imported from
    faust or mode, and `_methods` of a faust/mode base class overridden by a subclass."""
    tree = ast.parse(path.read_text())
    found, bases = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in ("faust", "mode"):
            for alias in node.names:
                bases[alias.asname or alias.name] = (node.module, alias.name)
                if alias.name.startswith("_"):
                    found.append(f"imports {node.module}.{alias.name}")
        elif isinstance(node, ast.Attribute) and node.attr in private:
            found.append(f"line {node.lineno}: .{node.attr}")
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        for base in node.bases:
            name = base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", "")
            if name not in bases:
                continue
            module, attr = bases[name]
            klass = getattr(__import__(module, fromlist=[attr]), attr)
            for item in node.body:
                if (isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name.startswith("_")
                        and not item.name.startswith("__") and hasattr(klass, item.name)):
                    found.append(f"class {node.name} overrides {attr}.{item.name}")
    return found


def test_no_module_outside_faust_internals_touches_a_faust_internal() -> None:
    private = {i.name for i in PRIVATE_ATTRIBUTES}
    offenders = {str(p.relative_to(PIPELINE)): uses for p in sorted(PIPELINE.rglob("*.py"))
                 if INTERNALS not in p.parents and (uses := _outside_uses(p, private))}
    assert offenders == {}


def test_the_outside_check_finds_each_kind_of_use(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from faust.streams import _current_event\nfrom mode import Worker\n\n"
                   "class W(Worker):\n    def _on_sigterm(self):\n        pass\n\n"
                   "def f(consumer):\n    return consumer._read_offset\n")
    uses = _outside_uses(bad, {"_read_offset"})
    assert uses == ["imports faust.streams._current_event", "line 9: ._read_offset", "class W overrides Worker._on_sigterm"]
