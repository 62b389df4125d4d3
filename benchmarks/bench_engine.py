"""Engine benchmark: stand-in LaMa and OpenCV speed and peak RSS per case; prints JSON.

Every case runs in a fresh subprocess so its peak RSS is its own. The LaMa cases use the
full-size (51 M parameter) random-weight stand-in from lama_desktop.engine.lama_arch, exported
to TorchScript, so the cost is the real model's. The comparison with IOPaint's own LaMa class
on the same file is bench_lama_overhead.py.

    python benchmarks/bench_engine.py [--quick] [--repeat N] [--only lama|opencv]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

LAMA_SIZES = (512, 1024, 2048)
OPENCV_SIZES = ((1024, 768), (4000, 3000))  # width x height
# The first TorchScript calls are slow (profiling executor, oneDNN and FFT set-up): a small
# warm-up comes before timing.
WARMUP_RUNS = 3


def test_pair(height: int, width: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A textured image and a mask of two disks covering about 6 % of it (built lean on memory,
    so a 12-megapixel case's peak RSS is the model's, not this generator's)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.ogrid[0:height, 0:width]
    image = rng.integers(0, 40, (height, width, 3), dtype=np.uint8)
    image[..., 0] += (xx * 215 // max(width, 1)).astype(np.uint8)
    image[..., 1] += (yy * 215 // max(height, 1)).astype(np.uint8)
    image[..., 2] += ((xx + yy) % 216).astype(np.uint8)
    mask = np.zeros((height, width), np.uint8)
    for cx, cy, r in ((0.3, 0.35, 0.12), (0.7, 0.65, 0.09)):
        dx = (xx - cx * width).astype(np.float32) ** 2
        dy = (yy - cy * height).astype(np.float32) ** 2
        mask[dx + dy < np.float32(r * min(height, width)) ** 2] = 255
    return image, mask


def peak_rss_mib() -> float:
    """Peak resident set size of this process.

    Linux's ru_maxrss survives exec, so a child spawned by a large parent would report the
    parent's size; /proc/self/status's VmHWM belongs to this process image alone.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**20 if sys.platform == "darwin" else 1024)


def time_runs(run: Any, repeat: int) -> list[float]:
    """Wall milliseconds of `repeat` calls."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return times


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    """Body of one subprocess: load the model, warm up small, time the case."""
    from lama_desktop.engine.base import create_model
    from lama_desktop.engine.hd import HDConfig, HDStrategy, run_with_strategy, working_size

    options = {"model_path": case["model_path"]} if case["model"] == "lama" else {}
    if case["model"] == "lama":
        import torch  # noqa: F401  (imported up front, as IOPaint does, so load_ms is the load)
    start = time.perf_counter()
    model = create_model(case["model"], device="cpu", **options)
    load_ms = (time.perf_counter() - start) * 1000
    cfg = HDConfig(strategy=HDStrategy(case["strategy"]))
    if case["model"] == "lama":
        # TorchScript's profiling executor optimises on the first calls; keep that out of timing.
        small_image, small_mask = test_pair(64, 64)
        for _ in range(WARMUP_RUNS):
            model.inpaint(small_image, small_mask)
    image, mask = test_pair(case["height"], case["width"])
    rss_before = peak_rss_mib()
    times = time_runs(lambda: run_with_strategy(model, image, mask, cfg), case["repeat"])
    return {
        **{k: case[k] for k in ("model", "strategy", "width", "height")},
        "model_input": list(working_size(case["height"], case["width"], cfg, mask)),
        "ms_per_image": round(min(times), 1),
        "ms_all": [round(t, 1) for t in times],
        "load_ms": round(load_ms, 1),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "peak_rss_before_run_mib": round(rss_before, 1),
    }


def spawn(python: str, argv: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run one case in a fresh interpreter; its last stdout line is the JSON result."""
    proc = subprocess.run(
        [python, *argv], capture_output=True, text=True, env={**os.environ, **(env or {})}
    )
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1:] or ["exit " + str(proc.returncode)]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def lama_cases(model_file: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    cases = []
    for size in LAMA_SIZES:
        for strategy in ("original", "resize", "crop"):
            if args.quick and size == 2048 and strategy == "original":
                continue  # about a minute and ~7 GiB on 2 cores; run without --quick
            cases.append(
                {
                    "model": "lama",
                    "model_path": str(model_file),
                    "strategy": strategy,
                    "width": size,
                    "height": size,
                    "repeat": 1 if size == 2048 else args.repeat,
                }
            )
    return cases


def opencv_cases(args: argparse.Namespace) -> list[dict[str, Any]]:
    return [
        {"model": name, "strategy": strategy, "width": w, "height": h, "repeat": args.repeat}
        for name in ("opencv-ns", "opencv-telea")
        for w, h in OPENCV_SIZES
        for strategy in ("original", "crop")
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip 2048^2 original, 1 repeat")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per case (best kept)")
    parser.add_argument("--only", choices=("lama", "opencv"), action="append")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case and exit
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(json.loads(args.case))))
        return 0
    if args.quick:
        args.repeat = 1
    parts = set(args.only or ("lama", "opencv"))
    report: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "repeat": args.repeat,
    }
    with tempfile.TemporaryDirectory(prefix="bench-engine-") as tmp:
        work = Path(tmp)
        model_file = work / "standin-big-lama.pt"
        if "lama" in parts:
            from lama_desktop.engine.lama_arch import export_torchscript

            export_torchscript(model_file, config="big", seed=0)
            report["standin_file_mib"] = round(model_file.stat().st_size / 2**20, 1)
        me = [sys.executable, __file__, "--case"]
        if "lama" in parts:
            cases = lama_cases(model_file, args)
            report["lama_standin_cpu"] = [spawn(me[0], [*me[1:], json.dumps(c)]) for c in cases]
        if "opencv" in parts:
            cases = opencv_cases(args)
            report["opencv"] = [spawn(me[0], [*me[1:], json.dumps(c)]) for c in cases]
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
