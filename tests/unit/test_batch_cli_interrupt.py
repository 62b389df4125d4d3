"""Ctrl-C (and SIGTERM) stop a running batch cleanly: no partial file, a summary, exit 130."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

PHOTOS = 30


def make_batch(root: Path) -> tuple[Path, Path, Path]:
    """Photos big enough that OpenCV needs a noticeable moment for each."""
    images, masks, out = root / "in", root / "masks", root / "out"
    images.mkdir()
    masks.mkdir()
    rng = np.random.default_rng(0)
    for i in range(PHOTOS):
        pixels = rng.integers(0, 256, (360, 480, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(images / f"p{i:02}.png", compress_level=1)
    mask = np.zeros((360, 480), np.uint8)
    mask[40:320, 60:420] = 255
    Image.fromarray(mask).save(masks / "mask.png")
    return images, masks / "mask.png", out


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_leaves_only_whole_files(tmp_path: Path, signum: int) -> None:
    images, mask, out = make_batch(tmp_path)
    command = [sys.executable, "-m", "lama_desktop", "batch", str(images), "--masks", str(mask)]
    process = subprocess.Popen(
        [*command, "--out", str(out), "--model", "opencv-telea", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (out.is_dir() and any(out.glob("*.png"))):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the batch never produced a result"
            time.sleep(0.02)
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, stderr
    summary = json.loads(stdout)
    counts = summary["counts"]
    assert counts["cancelled"] >= 1, "the signal came after the batch had finished"
    assert counts["done"] + counts["cancelled"] + counts["failed"] == PHOTOS
    written = sorted(out.iterdir())
    assert [p for p in written if p.suffix != ".png"] == []  # no temporary file left
    assert len(written) == counts["done"]
    for path in written:
        with Image.open(path) as result:
            result.load()  # every file there is whole
            assert result.size == (480, 360)
    done = {Path(f["output"]).name for f in summary["files"] if f["status"] == "done"}
    assert done == {p.name for p in written}
