"""Following a log like `tail -F` (pipeline/ops/logfollow.py): a file not there yet, rotation by
rename (Postfix's `postfix logrotate`: renamed, then gzipped) and by copytruncate, and a saved
position found again after a restart wherever rotation moved its file."""
from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.ops import logfollow
from pipeline.ops.logfollow import LogFollower


@pytest.fixture(autouse=True)
def quick_rotation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logfollow, "ROTATE_GRACE_S", 0.0)


def write(path: Path, *lines: str, partial: str = "") -> None:
    with open(path, "ab") as f:
        f.write("".join(f"{line}\n" for line in lines).encode() + partial.encode())


def rotate(log: Path, suffix: str, before_gzip: tuple[str, ...] = ()) -> Path:
    """What `postfix logrotate` does: rename, (the writer may still append,) gzip, unlink."""
    rotated = log.with_name(f"{log.name}.{suffix}")
    os.rename(log, rotated)
    write(rotated, *before_gzip)
    with open(rotated, "rb") as src, gzip.open(f"{rotated}.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    os.unlink(rotated)
    return Path(f"{rotated}.gz")


def drain(f: LogFollower, rounds: int = 5) -> list[str]:
    out: list[str] = []
    for _ in range(rounds):  # a rename is noticed at one end of file and acted on at the next
        out += f.read()
    return out


def test_a_log_that_does_not_exist_yet_is_read_from_its_start_once_it_does(tmp_path: Path) -> None:
    log = tmp_path / "maillog"
    f = LogFollower(log, None, from_start=False, follow=True)
    assert drain(f) == []
    write(log, "a", "b", partial="c")
    assert drain(f) == ["a", "b"]  # a line without its newline waits for the rest
    write(log, "-end")
    assert drain(f) == ["c-end"]


def test_rotation_by_rename_and_gzip_loses_nothing_and_keeps_the_order(tmp_path: Path) -> None:
    log = tmp_path / "maillog"
    write(log, "1", "2")
    f = LogFollower(log, None, from_start=False, follow=True)
    assert drain(f) == ["1", "2"]
    rotate(log, "20261203-120000", before_gzip=("3",))  # "3": the writer had not reopened yet
    write(log, "4")
    assert drain(f) == ["3", "4"]
    write(log, "5")
    assert drain(f) == ["5"]


def test_copytruncate_starts_the_file_again(tmp_path: Path) -> None:
    log = tmp_path / "maillog"
    write(log, "first line of a day", "second")
    f = LogFollower(log, None, from_start=False, follow=True)
    assert drain(f) == ["first line of a day", "second"]
    shutil.copy(log, tmp_path / "maillog.1")
    os.truncate(log, 0)
    write(log, "new")
    assert drain(f) == ["new"] and f.truncations == 1


def _saved(f: LogFollower) -> dict:
    pos = f.position()
    f.close()
    return pos


def test_a_restart_resumes_at_the_saved_position_in_the_same_file(tmp_path: Path) -> None:
    log = tmp_path / "maillog"
    write(log, "1", "2")
    f = LogFollower(log, None, from_start=False, follow=True)
    assert drain(f) == ["1", "2"]
    pos = _saved(f)
    write(log, "3")
    assert drain(LogFollower(log, pos, from_start=False, follow=True)) == ["3"]


def test_a_restart_finds_its_file_rotated_and_compressed_twice_while_it_was_down(tmp_path: Path) -> None:
    log = tmp_path / "maillog"
    write(log, "1", "2")
    f = LogFollower(log, None, from_start=False, follow=True)
    assert drain(f) == ["1", "2"]
    pos = _saved(f)
    write(log, "3")
    for stamp, line in (("120000", "4"), ("130000", "5")):
        gz = rotate(log, f"20261203-{stamp}")
        write(log, line)
        os.utime(gz, (int(stamp), int(stamp)))  # the older rotation is the older file
    back = LogFollower(log, pos, from_start=False, follow=True)
    assert back.lost is None and drain(back) == ["3", "4", "5"]


def test_a_position_whose_file_is_gone_says_so_and_reads_the_current_file(tmp_path: Path) -> None:
    log = tmp_path / "maillog"
    write(log, "1")
    f = LogFollower(log, None, from_start=False, follow=True)
    drain(f)
    pos = _saved(f)
    log.unlink()
    write(log, "new 1")
    back = LogFollower(log, pos, from_start=False, follow=True)
    assert back.lost and drain(back) == ["new 1"]


def test_from_start_reads_the_rotated_files_oldest_first_then_the_log_and_stops(tmp_path: Path) -> None:
    log = tmp_path / "maillog"
    with gzip.open(tmp_path / "maillog.2.gz", "wt") as g:
        g.write("a\nb\n")
    write(tmp_path / "maillog.1", "c")
    write(log, "d")
    for i, name in enumerate(("maillog.2.gz", "maillog.1", "maillog")):
        os.utime(tmp_path / name, (1000 + i, 1000 + i))
    f = LogFollower(log, None, from_start=True, follow=False)
    assert drain(f) == ["a", "b", "c", "d"] and f.finished
    assert [p.name for p in logfollow.rotated(log)] == ["maillog.2.gz", "maillog.1"]


def test_an_unreadable_log_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILSLA_DATA", str(tmp_path / "data"))
    assert main(["ingest", "postfix", str(tmp_path)]) == 2
    assert main(["ingest", "exim", str(tmp_path / "nothing"), "--no-follow"]) == 2
    assert main(["ingest", "postfix", str(tmp_path / "no" / "dir" / "maillog")]) == 2
    (tmp_path / "bad.yaml").write_text("postfix: {handling: sometimes}\n")
    assert main(["ingest", "postfix", str(tmp_path / "maillog"), "--config", str(tmp_path / "bad.yaml")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"mailsla ingest: cannot read {tmp_path}: is a directory",
                   f"mailsla ingest: cannot read {tmp_path / 'nothing'}: no such file",
                   f"mailsla ingest: cannot read {tmp_path / 'no' / 'dir' / 'maillog'}: no such directory",
                   "mailsla ingest: postfix.handling: one of auto, delays, timestamps, got 'sometimes'"]
