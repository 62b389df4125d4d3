"""Editor strokes on 48 MP and 140 MP photos (JSON): latency, bytes sent and event-loop lag.

    python benchmarks/bench_edit_huge.py [--rounds 5] [--quick]

A real scheduler and a local agent with one OpenCV (Telea) worker on 127.0.0.1, as the app's
editor uses them (`Scheduler.inpaint`), crop HD strategy (IOPaint's defaults). Each round erases
one 500-pixel stroke at a new place. "windows" is today's path (only the crop windows travel);
"whole" is the old one (the whole frame sent every stroke), forced by switching the windows
off, and refused above the 256 MiB message limit. Lag: the longest a 5 ms asyncio timer was
late during the rounds (the app's GUI shares this loop).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import zmq

from lama_desktop.cluster import jobfiles
from lama_desktop.cluster.agent import Agent
from lama_desktop.cluster.keys import KeyPair
from lama_desktop.cluster.scheduler import InpaintFailed, Scheduler
from lama_desktop.engine.hd import HDConfig, HDStrategy
from lama_desktop.engine.pipeline import JobSettings

SIZES = ((6000, 8000), (10_000, 14_000))  # height, width: 48 MP and 140 MP
SETTINGS = JobSettings(model="opencv-telea", hd=HDConfig(strategy=HDStrategy.CROP))


def photo(height: int, width: int) -> np.ndarray:
    """Gradients with noise, built a band at a time (a 420 MB photo, no 3 GB temporaries)."""
    rgb = np.empty((height, width, 3), np.uint8)
    rng = np.random.default_rng(11)
    x = (np.arange(width) * 255 // width).astype(np.uint8)
    for top in range(0, height, 1000):
        rows = np.arange(top, min(top + 1000, height))
        rgb[rows, :, 0] = x
        rgb[rows, :, 1] = (rows * 255 // height).astype(np.uint8)[:, None]
        rgb[rows, :, 2] = rng.integers(0, 256, (len(rows), width), dtype=np.uint8)
    return rgb


@contextmanager
def sent_bytes(record: list[int]) -> Iterator[None]:
    """Record what each edit sends (image + mask frames), as chosen by `edit_payload`."""
    import lama_desktop.cluster.scheduler as scheduler_module

    original = scheduler_module.edit_payload

    def recording(edit: jobfiles.EditEntry, hd: HDConfig) -> None:
        original(edit, hd)
        record.append(edit.payload_bytes())

    scheduler_module.edit_payload = recording  # type: ignore[assignment]
    try:
        yield
    finally:
        scheduler_module.edit_payload = original  # type: ignore[assignment]


@contextmanager
def whole_frames() -> Iterator[None]:
    """The old path: no windows, the whole frame travels."""
    original = jobfiles.edit_windows
    jobfiles.edit_windows = lambda mask, cfg: None  # type: ignore[assignment]
    try:
        yield
    finally:
        jobfiles.edit_windows = original


async def lag_probe(lags: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        await asyncio.sleep(0.005)
        lags.append(time.perf_counter() - started - 0.005)


async def strokes(scheduler: Scheduler, rgb: np.ndarray, rounds: int) -> dict[str, Any]:
    height, width = rgb.shape[:2]
    times, sent, lags = [], [], []
    masks = []  # painted before the lag probe starts: the canvas has its mask already
    for i in range(rounds + 1):  # the first round warms the worker up
        masks.append(np.zeros((height, width), np.uint8))
        x, y = width // 5 + i * 700, height // 3 + i * 500
        cv2.line(masks[-1], (x, y), (x + 450, y + 200), 255, 40)
    stop = asyncio.Event()
    probe = asyncio.create_task(lag_probe(lags, stop))
    try:
        with sent_bytes(sent):
            for i, mask in enumerate(masks):
                started = time.perf_counter()
                try:
                    result = await scheduler.inpaint(rgb, mask, SETTINGS)
                except InpaintFailed as exc:
                    return {"refused": str(exc), "sent_bytes": sent[-1]}
                if i:
                    times.append(time.perf_counter() - started)
                del result
    finally:
        stop.set()
        await probe
    return {
        "latency_ms_median": round(statistics.median(times) * 1000, 1),
        "latency_ms_max": round(max(times) * 1000, 1),
        "sent_bytes_median": int(statistics.median(sent)),
        "loop_lag_ms_max": round(max(lags) * 1000, 1),
        "rounds": rounds,
    }


async def run(rounds: int) -> list[dict[str, Any]]:
    results = []
    with tempfile.TemporaryDirectory(prefix="lama-bench-edit-") as tmp:
        keypair = KeyPair(*zmq.curve_keypair())
        agent = Agent("tcp://127.0.0.1:0", data_dir=Path(tmp) / "agent", workers=1,
                      device="cpu", preauthorized=[keypair.public], log_file=False)  # fmt: skip
        scheduler = Scheduler(journal=None, keypair=keypair, name="bench")
        await agent.start()
        await scheduler.start(resume=False, connect_paired=False)
        try:
            node = await scheduler.add_node(agent.endpoint, agent.public_key.decode(), "local")
            while not scheduler.peers[node].ready:
                await asyncio.sleep(0.01)
            for height, width in SIZES:
                rgb = photo(height, width)
                windows = await strokes(scheduler, rgb, rounds)
                with whole_frames():
                    whole = await strokes(scheduler, rgb, rounds)
                entry: dict[str, Any] = {
                    "photo": f"{width}x{height}",
                    "megapixels": round(width * height / 1e6, 1),
                    "frame_bytes": rgb.nbytes + width * height,
                    "windows": windows,
                    "whole": whole,
                }
                if "latency_ms_median" in whole:
                    entry["latency_ratio_windows_vs_whole"] = round(
                        windows["latency_ms_median"] / whole["latency_ms_median"], 3
                    )
                entry["sent_ratio_windows_vs_frame"] = round(
                    windows["sent_bytes_median"] / entry["frame_bytes"], 5
                )
                results.append(entry)
                del rgb
        finally:
            await scheduler.stop()
            await agent.stop(drain=False)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="2 rounds per photo")
    args = parser.parse_args()
    rounds = 2 if args.quick else args.rounds
    load_before = os.getloadavg()
    results = asyncio.run(run(rounds))
    print(json.dumps({
        "benchmark": "edit_huge",
        "cpu_count": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "model": SETTINGS.model,
        "results": results,
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
