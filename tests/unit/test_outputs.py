"""Output folders: leftovers of killed writers removed, unwritable folders found before a batch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lama_desktop.cli import main
from lama_desktop.engine.imageio import TEMP_NAME, temp_path
from lama_desktop.engine.outputs import remove_leftovers, unwritable_output
from lama_desktop.engine.plan import plan_batch


def _folders(tmp_path: Path, names: tuple[str, ...] = ("a", "b")) -> tuple[Path, Path]:
    images, masks = tmp_path / "in", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    pixels = np.full((16, 16, 3), 90, np.uint8)
    for name in names:
        Image.fromarray(pixels).save(images / f"{name}.png")
        Image.fromarray(np.full((16, 16), 255, np.uint8)).save(masks / f"{name}.png")
    return images, masks


def test_temp_names_match_the_writers_pattern(tmp_path: Path) -> None:
    temp = temp_path(tmp_path / "photo 1.jpg")
    match = TEMP_NAME.fullmatch(temp.name)
    assert match is not None and match["name"] == "photo 1.jpg"


def test_only_our_own_abandoned_temps_of_this_batch_are_removed(tmp_path: Path) -> None:
    images, masks = _folders(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "b.png").write_bytes(b"done before")  # already done: its temps are ours too
    ours = [out / ".a.png.0123abcd.tmp", out / ".b.png.89abcdef.tmp"]
    theirs = [
        out / ".c.png.0123abcd.tmp",  # not an output of this batch
        out / ".a.png.0123abcz.tmp",  # not our pattern
        out / "a.png.0123abcd.tmp",
        out / ".a.png.0123abcd.tmp.bak",
        tmp_path / ".a.png.0123abcd.tmp",  # not in the output folder
    ]
    for path in (*ours, *theirs):
        path.write_bytes(b"half a png")
    (out / ".a.png.fedcba98.tmp").mkdir()  # a folder is never removed
    plan = plan_batch(images, masks, out)
    assert sorted(remove_leftovers(plan)) == sorted(ours)
    assert not any(p.exists() for p in ours)
    assert all(p.exists() for p in theirs) and (out / ".a.png.fedcba98.tmp").is_dir()


_WRITER = """
import os, sys, time
from pathlib import Path
from lama_desktop.engine.imageio import lock_temp, temp_path
temp = temp_path(Path(sys.argv[1]))
fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
lock_temp(fd)
os.write(fd, b"the first half of a photo")
print(temp, flush=True)
time.sleep(60)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file locks")
def test_a_live_writers_temp_is_kept_and_a_killed_ones_is_removed(tmp_path: Path) -> None:
    images, masks = _folders(tmp_path, ("a",))
    out = tmp_path / "out"
    out.mkdir()
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(out / "a.png")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout is not None
        temp = Path(writer.stdout.readline().strip())
        plan = plan_batch(images, masks, out)
        assert remove_leftovers(plan) == [] and temp.exists()  # a second run while it writes
        writer.send_signal(signal.SIGKILL)
        writer.wait(10)
        assert remove_leftovers(plan) == [temp] and not temp.exists()
    finally:
        writer.kill()
        writer.wait(10)
        if writer.stdout is not None:
            writer.stdout.close()


def test_a_rerun_of_the_batch_command_removes_the_leftover(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images, masks = _folders(tmp_path, ("a",))
    out = tmp_path / "out"
    out.mkdir()
    leftover = out / ".a.png.0badf00d.tmp"
    leftover.write_bytes(b"killed mid-write")
    argv = ["batch", str(images), "--masks", str(masks), "--out", str(out), "--in-process"]
    assert main([*argv, "--model", "opencv-telea"]) == 0
    assert not leftover.exists() and sorted(p.name for p in out.iterdir()) == ["a.png"]
    assert "removed 1 temporary file(s)" in capsys.readouterr().err


def test_an_output_folder_that_cannot_be_created_is_one_reason_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images, masks = _folders(tmp_path)
    (tmp_path / "a-file").write_bytes(b"")
    out = tmp_path / "a-file" / "out"
    reason = unwritable_output(plan_batch(images, masks, out))
    assert reason == f"cannot create the output folder {out}: {tmp_path / 'a-file'} is not a folder"
    argv = ["batch", str(images), "--masks", str(masks), "--out", str(out), "--in-process"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("cannot create the output folder") == 1 and ".tmp" not in err


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX permissions")
def test_a_read_only_output_folder_is_found_before_the_batch_starts(tmp_path: Path) -> None:
    images, masks = _folders(tmp_path)
    with tempfile.TemporaryDirectory(prefix="lama-ro-") as scratch:
        root = Path(scratch)
        root.chmod(0o755)
        locked, free = root / "locked", root / "free"
        locked.mkdir(mode=0o555)
        free.mkdir(mode=0o777)
        locked.chmod(0o555)
        free.chmod(0o777)
        plans = {
            "locked": plan_batch(images, masks, locked),
            "below": plan_batch(images, masks, locked / "sub"),
            "free": plan_batch(images, masks, free / "new"),
        }
        with _as_nobody():
            reasons = {name: unwritable_output(plan) for name, plan in plans.items()}
        assert list(free.iterdir()) == []  # the check leaves nothing behind, not even the folder
    assert reasons["locked"] == f"cannot write to the output folder {locked}: Permission denied"
    assert (
        reasons["below"] == f"cannot create the output folder {locked / 'sub'}: Permission denied"
    )
    assert reasons["free"] is None  # the same user can write where it may


@contextmanager
def _as_nobody() -> Iterator[None]:
    if os.geteuid() != 0:
        yield
        return
    os.seteuid(65534)  # root may write anywhere: check as a user who may not
    try:
        yield
    finally:
        os.seteuid(0)


def test_leftover_age_is_not_needed_where_locks_work(tmp_path: Path) -> None:
    images, masks = _folders(tmp_path, ("a",))
    out = tmp_path / "out"
    out.mkdir()
    fresh = out / ".a.png.00000000.tmp"
    fresh.write_bytes(b"")
    os.utime(fresh, (time.time(), time.time()))
    assert remove_leftovers(plan_batch(images, masks, out)) == [fresh]
