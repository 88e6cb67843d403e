"""Faust internals live in one place (pipeline/stream/faust_internals), still exist in the
installed faust-streaming, and each names the tests of its behaviour
(tests/unit/test_faust_behaviour*.py): an upgrade that drops, renames or changes one fails here
or there, not in a worker."""
from __future__ import annotations

import ast
import re
from importlib.metadata import version
from pathlib import Path

import pytest

from pipeline.stream.faust_internals import (AIOKAFKA_PRIVATE, FAUST_VERSION, MODE_VERSION, PRIVATE_ATTRIBUTES,
                                             Internal)

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = ROOT / "pipeline"
INTERNALS = PIPELINE / "stream" / "faust_internals"
KAFKA_ADAPTER = PIPELINE / "stream" / "kafka.py"  # the one module outside that may use AIOKAFKA_PRIVATE
EVERYTHING = PRIVATE_ATTRIBUTES + AIOKAFKA_PRIVATE


def test_the_installed_faust_is_the_one_the_list_was_checked_against() -> None:
    assert version("faust-streaming") == FAUST_VERSION, "re-check PRIVATE_ATTRIBUTES, then update FAUST_VERSION"
    assert version("mode-streaming") == MODE_VERSION, "re-check PRIVATE_ATTRIBUTES, then update MODE_VERSION"


@pytest.mark.parametrize("item", EVERYTHING, ids=lambda i: f"{i.owner}.{i.name}")
def test_every_private_attribute_we_use_still_exists(item: Internal) -> None:
    assert item.present(), f"{item.owner}.{item.name} is gone: {item.used_in} works around: {item.why}"
    assert item.why and item.behaviour and item.used_in


def _test_functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


def _named(ref: str) -> tuple[Path, str]:
    """The file and function of a "path::function" reference (an end-to-end one may add a note)."""
    found = re.match(r"(\S+)::(\w+)", ref)
    assert found, f"not path::function: {ref!r}"
    return ROOT / found[1], found[2]


@pytest.mark.parametrize("item", EVERYTHING, ids=lambda i: f"{i.owner}.{i.name}")
def test_every_entry_names_behaviour_tests_that_exist(item: Internal) -> None:
    for ref in item.behaviour:
        path, func = _named(ref)
        assert path.parent == ROOT / "tests" / "unit" and func.startswith("test_"), ref
        assert path.is_file() and func in _test_functions(path), f"{item.owner}.{item.name}: no {ref}"
    if item.end_to_end:
        path, func = _named(item.end_to_end)
        assert path.is_file() and func.startswith("test_") and func in _test_functions(path), item.end_to_end


def test_every_behaviour_test_guards_an_entry() -> None:
    named = {_named(ref) for item in EVERYTHING for ref in item.behaviour}
    files = sorted((ROOT / "tests" / "unit").glob("test_faust_behaviour*.py"))
    assert files
    unlisted = {(p, f) for p in files for f in _test_functions(p) if f.startswith("test_")} - named
    assert unlisted == set()


def test_the_check_fails_for_an_attribute_that_is_not_there_and_sees_instance_attributes() -> None:
    assert not Internal("faust.transport.consumer:Consumer", "_no_such_attribute", "", "", ()).present()
    assert not Internal("faust.no_such_module", "_x", "", "", ()).present()
    assert not Internal("faust.transport.consumer:Consumer", "_no_such.app", "", "", ()).present()
    # `_read_offset` is assigned in Consumer.__init__, not a class attribute: found in the source
    item = Internal("faust.transport.consumer:Consumer", "_read_offset", "", "", ())
    assert not hasattr(item.resolve(), "_read_offset") and item.present()


def _chain(node: ast.Attribute) -> list[str]:
    """The attribute names of `x.a.b` ending at `node`: ["a", "b"]."""
    out = [node.attr]
    while isinstance(node.value, ast.Attribute):
        node = node.value
        out.insert(0, node.attr)
    return out


def _outside_uses(path: Path, private: set[str]) -> list[str]:
    """Internal Faust/mode names used by a module: attributes from the list (a dotted entry as
    that chain), `_names` or listed names imported from faust or mode, and `_methods` of a
    faust/mode base class overridden by a subclass."""
    tree = ast.parse(path.read_text())
    found, bases = [], {}
    chains = [name.split(".") for name in private]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in ("faust", "mode"):
            for alias in node.names:
                bases[alias.asname or alias.name] = (node.module, alias.name)
                if alias.name.startswith("_") or alias.name in private:
                    found.append(f"imports {node.module}.{alias.name}")
        elif isinstance(node, ast.Attribute):
            chain = _chain(node)
            for parts in chains:
                if chain[-len(parts):] == parts:
                    found.append(f"line {node.lineno}: .{'.'.join(parts)}")
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
    """aiokafka's privates: in the Kafka adapter too (its own client, not Faust's)."""
    faust_names = {i.name for i in PRIVATE_ATTRIBUTES}
    offenders = {}
    for p in sorted(PIPELINE.rglob("*.py")):
        if INTERNALS in p.parents:
            continue
        names = faust_names | ({i.name for i in AIOKAFKA_PRIVATE} if p != KAFKA_ADAPTER else set())
        if uses := _outside_uses(p, names):
            offenders[str(p.relative_to(PIPELINE))] = uses
    assert offenders == {}


def test_the_outside_check_finds_each_kind_of_use(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from faust.streams import _current_event\nfrom mode import Worker\n"
                   "from faust.transport.consumer import CONSUMER_FETCHING\n\n"
                   "class W(Worker):\n    def _on_sigterm(self):\n        pass\n\n"
                   "def f(consumer, request):\n    request.transport.close()\n"
                   "    return consumer._read_offset, consumer.transport.app.should_stop\n")
    uses = _outside_uses(bad, {"_read_offset", "transport.app", "CONSUMER_FETCHING"})
    assert uses == ["imports faust.streams._current_event", "imports faust.transport.consumer.CONSUMER_FETCHING",
                    "line 11: ._read_offset", "line 11: .transport.app", "class W overrides Worker._on_sigterm"]
