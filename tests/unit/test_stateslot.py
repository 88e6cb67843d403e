"""Each join process keeps its Faust state in a slot of its own (RocksDB locks a database for one
process): a second process on the same data dir takes the next slot, a dead one's slot is free."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pipeline.stream import stateslot

TAKE = "import sys; from pathlib import Path; from pipeline.stream import stateslot; print(stateslot.acquire(Path(sys.argv[1])))"


def test_processes_get_different_slots_and_a_process_keeps_its_own(tmp_path: Path) -> None:
    mine = stateslot.acquire(tmp_path)
    assert stateslot.acquire(tmp_path) == mine and mine.is_dir()
    other = subprocess.run([sys.executable, "-c", TAKE, str(tmp_path)], capture_output=True, text=True, check=True)
    assert Path(other.stdout.strip()) != mine  # held by this process: the other one takes the next


def test_the_slot_of_a_process_that_ended_is_taken_again(tmp_path: Path) -> None:
    runs = [subprocess.run([sys.executable, "-c", TAKE, str(tmp_path)], capture_output=True, text=True,
                           check=True).stdout.strip() for _ in range(2)]
    assert runs[0] == runs[1] == str(tmp_path.resolve() / "slot-0")
