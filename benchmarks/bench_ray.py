"""Ray pool benchmark (JSON on stdout): one 60-photo batch, worker processes against Ray actors.

The same 60 photos (the 20 of the benchmark set, 1024x768, three times over) go through a real
`lama-agent --workers 2` and through a real `lama-agent --ray ADDRESS` with 2 CPU actors on a
local Ray head (2 CPUs, 127.0.0.1 only), each paired with its own Scheduler, in one run.
Reported separately: the head's start, each agent's start-up (process start to two slots
READY), and the batch wall clock (submit to the last output written; median of the repeats,
the two paths alternating). Goal: the Ray path's batch wall clock within 1.3x of the
subprocess path's. Outputs of the two paths are compared by pixels.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from data import build_photo_set  # noqa: E402  (benchmarks/ is not a package)

from lama_desktop.cluster.keys import load_or_create_keypair  # noqa: E402
from lama_desktop.cluster.scheduler import Scheduler  # noqa: E402
from lama_desktop.engine.pipeline import JobSettings  # noqa: E402
from lama_desktop.engine.plan import plan_batch  # noqa: E402
from tests.integration.cluster_support import AgentProcess  # noqa: E402
from tests.integration.ray_head import RAY_ENV, RayHead  # noqa: E402

SETTINGS = JobSettings(model="opencv-telea")
COPIES = 3


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def sixty_photos(root: Path) -> tuple[Path, Path]:
    """The benchmark photo set three times over, under distinct names."""
    photos = build_photo_set()
    images, masks = root / "images", root / "masks"
    images.mkdir(parents=True)
    masks.mkdir()
    for copy in range(COPIES):
        for image in sorted(photos.images.iterdir()):
            mask = next(photos.masks.glob(image.stem + ".*"))
            shutil.copy(image, images / f"c{copy}-{image.name}")
            shutil.copy(mask, masks / f"c{copy}-{image.stem}{mask.suffix}")
    return images, masks


class Route:
    """One way through: an agent process and the scheduler paired with it."""

    def __init__(self, name: str, root: Path, *extra: str) -> None:
        started = time.perf_counter()
        self.agent = AgentProcess(root / name / "agent", name, 2, extra=extra)
        self.name, self.root, self.started = name, root / name, started
        self.scheduler: Scheduler | None = None
        self.startup_s = 0.0
        self.walls: list[float] = []

    async def connect(self) -> None:
        keypair = load_or_create_keypair(self.root / "desktop.key")
        self.scheduler = Scheduler(journal=None, keypair=keypair, name="bench")
        await self.scheduler.start(resume=False, connect_paired=False)
        node = await self.scheduler.pair(self.agent.link)
        deadline = time.monotonic() + 120
        while self.scheduler.state.nodes[node].slots < 2:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: two slots never came up")
            await asyncio.sleep(0.02)
        self.startup_s = time.perf_counter() - self.started

    async def batch(self, images: Path, masks: Path, repeat: int) -> Path:
        assert self.scheduler is not None
        out = self.root / f"out{repeat}"
        plan = plan_batch(images, masks, out)
        started = time.perf_counter()
        batch = self.scheduler.submit_batch(plan, SETTINGS, f"{self.name}-{repeat}")
        outcomes = await asyncio.wait_for(self.scheduler.wait_batch(batch), 900)
        self.walls.append(time.perf_counter() - started)
        failed = [o.reason for o in outcomes if o.status != "done"]
        if failed:
            raise RuntimeError(f"{self.name}: {len(failed)} job(s) failed: {failed[:3]}")
        log(f"{self.name} repeat {repeat}: {self.walls[-1]:.2f} s")
        return out

    async def close(self) -> None:
        if self.scheduler is not None:
            await self.scheduler.stop()
        self.agent.close()

    def report(self, photos: int) -> dict[str, Any]:
        return {
            "startup_s": round(self.startup_s, 2),
            "batch_wall_s": [round(w, 2) for w in self.walls],
            "median_batch_wall_s": round(statistics.median(self.walls), 2),
            "photos_per_s": round(photos / statistics.median(self.walls), 2),
        }


def same_pixels(a: Path, b: Path) -> bool:
    names = sorted(p.name for p in a.iterdir())
    if names != sorted(p.name for p in b.iterdir()):
        return False
    return all(
        np.array_equal(np.asarray(Image.open(a / n)), np.asarray(Image.open(b / n))) for n in names
    )


async def run(repeats: int) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="lama-bench-ray-"))
    os.environ.update(RAY_ENV)
    images, masks = sixty_photos(root)
    photos = len(list(images.iterdir()))
    started = time.perf_counter()
    head = RayHead(cpus=2, own_session=False)  # the same CPU share as the worker processes
    head_s = time.perf_counter() - started
    paths: list[Route] = []
    try:
        procs = Route("processes", root)
        paths.append(procs)
        await procs.connect()
        ray = Route("ray", root, "--ray", head.address, "--ray-cpus-per-actor", "1")
        paths.append(ray)
        await ray.connect()
        outputs = {}
        for repeat in range(repeats):
            order = (procs, ray) if repeat % 2 == 0 else (ray, procs)
            for path in order:
                outputs[path.name] = await path.batch(images, masks, repeat)
        identical = same_pixels(outputs["processes"], outputs["ray"])
    finally:
        for path in paths:
            await path.close()
        head.stop()
        shutil.rmtree(root, ignore_errors=True)
    ratio = statistics.median(ray.walls) / statistics.median(procs.walls)
    return {
        "benchmark": "ray",
        "photos": photos,
        "size": "1024x768",
        "model": SETTINGS.model,
        "repeats": repeats,
        "cpus": os.cpu_count(),
        "ray_head_start_s": round(head_s, 2),
        "subprocess_workers_2": procs.report(photos),
        "ray_actors_2": ray.report(photos),
        "ray_over_subprocess_wall": round(ratio, 3),
        "goal_ray_within_1_3x": ratio <= 1.3,
        "outputs_identical": identical,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one repeat per path, not three")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(1 if args.quick else 3)), indent=2))


if __name__ == "__main__":
    main()
