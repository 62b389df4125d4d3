"""Shared pieces of the scheduler/cluster integration tests: photo folders, agent processes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from lama_desktop.engine.base import create_model
from lama_desktop.engine.pipeline import JobSettings, process_bytes

REPO = Path(__file__).resolve().parents[2]
PLUGIN_ENV = {"LAMA_PLUGINS": "tests.plugins.crashy_engine", "PYTHONPATH": str(REPO)}


def make_folder(
    root: Path, count: int, markers: dict[int, tuple[int, int, int]] | None = None
) -> tuple[Path, Path]:
    """`count` small photos with masks; photo i gets top-left pixel markers[i] if given."""
    images, masks = root / "images", root / "masks"
    images.mkdir(parents=True)
    masks.mkdir()
    rng = np.random.default_rng(7)
    for i in range(count):
        rgb = rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)
        if markers and i in markers:
            rgb[0, 0] = markers[i]
        mask = np.zeros((40, 56), np.uint8)
        mask[10 + i % 5 : 25, 15:35] = 255
        Image.fromarray(rgb).save(images / f"photo{i:02d}.png")
        Image.fromarray(mask).save(masks / f"photo{i:02d}.png")
    return images, masks


def expected_output(image: Path, mask: Path, settings: JobSettings) -> np.ndarray:
    """What a direct, in-process engine run makes of this photo.

    The test engine "crashy" is OpenCV Telea apart from its markers (and its 1.5 s pause), so
    Telea itself is the direct run to compare with.
    """
    model = create_model("opencv-telea" if settings.model == "crashy" else settings.model)
    data = process_bytes(
        image.read_bytes(), image.name, mask.read_bytes(), mask.name, settings, model
    )
    return np.asarray(Image.open(__import__("io").BytesIO(data)).convert("RGB"))


def read_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def leftovers(folder: Path) -> list[str]:
    """Temporary files an interrupted atomic write would leave."""
    return sorted(p.name for p in folder.rglob(".*") if p.is_file())


class AgentProcess:
    """`lama-agent` as a real process on 127.0.0.1; `link` is the pairing link it printed."""

    def __init__(
        self,
        data_dir: Path,
        name: str,
        workers: int = 1,
        bind: str = "tcp://127.0.0.1:0",
        extra: tuple[str, ...] = (),
    ) -> None:
        env = dict(os.environ, **PLUGIN_ENV)
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "lama_desktop.cluster.agent_cli",
                "--bind", bind, "--workers", str(workers), "--device", "cpu",
                "--name", name, "--data-dir", str(data_dir), "--no-announce", *extra,
            ],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=REPO,
        )  # fmt: skip
        self.link = ""
        assert self.process.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            if line.startswith("lama://"):
                self.link = line.strip()
                break
        assert self.link, f"agent {name} printed no pairing link (exit {self.process.poll()})"

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.process.stdout is not None:
            self.process.stdout.close()


async def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)
