"""Batch benchmark: `lama-desktop batch` against IOPaint 1.6's `iopaint run` on the same photos.

Both sides do the same work: OpenCV Navier-Stokes, radius 4 (IOPaint's cv2 model and defaults),
IOPaint's default HD strategy (crop: longest side over 800 -> one box per mask contour, margin
128), and PNG output (IOPaint always writes `<stem>.png`). Each contender is a fresh process per
run, timed wall-clock from start to exit, while the resident memory of its whole process tree
(workers included) is sampled with psutil. Runs alternate between contenders, rotating the order
each repeat. Outputs are counted and compared pixel by pixel with IOPaint's. Prints JSON.

The near-limit comparison (issue 8 item 11): the same photos through a plain
`multiprocessing.Pool` with as many processes as our local workers, each task decoding the
photo and mask with Pillow, running `cv2.inpaint` (NS, radius 4) on the whole photo and
encoding PNG with Pillow's defaults, as ours does. `vs_plain_pool` gives our wall clock over
the pool's (goal: at most 1.25) and, from our `--json` per-photo seconds, how busy our
workers were.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data import PhotoSet, build_photo_set  # benchmarks/ is not a package

DEFAULT_IOPAINT_PYTHON = "/opt/iopaint-venv/bin/python"
SAMPLE_EVERY_S = 0.02
PLAIN_POOL_GOAL = 1.25


@dataclass(frozen=True)
class Contender:
    """One command line under test; `{out}` in `argv` is replaced by a fresh output folder."""

    name: str
    argv: list[str]


@dataclass(frozen=True)
class RunResult:
    """What one run of one contender measured."""

    wall_s: float
    cpu_s: float  # user + system seconds of the whole process tree (reaped children included)
    peak_rss: int
    returncode: int
    outputs: int
    stderr_tail: str
    summary: dict[str, object] | None = None  # our batch's --json output, when it printed one


def tree_rss(process: psutil.Process) -> int:
    """Resident bytes of a process and all its descendants (0 for any that already exited)."""
    total = 0
    try:
        members = [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    for member in members:
        try:
            total += member.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


def run_measured(argv: list[str], out: Path, env: dict[str, str]) -> RunResult:
    """Run one command to completion, sampling its process tree's RSS every SAMPLE_EVERY_S."""
    with tempfile.TemporaryFile() as stderr, tempfile.TemporaryFile() as stdout:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        child = subprocess.Popen(argv, stdout=stdout, stderr=stderr, env=env)
        watched = psutil.Process(child.pid)
        peak = 0
        while child.poll() is None:
            peak = max(peak, tree_rss(watched))
            time.sleep(SAMPLE_EVERY_S)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        stderr.seek(0)
        tail = stderr.read()[-2000:].decode(errors="replace")
        stdout.seek(0)
        try:
            summary = json.loads(stdout.read())
        except ValueError:
            summary = None
    outputs = len(list(out.glob("*.png"))) if out.is_dir() else 0
    return RunResult(wall, cpu, peak, child.returncode, outputs, tail, summary)


def _plain_task(paths: tuple[str, str, str]) -> None:
    """One photo the plain way: decode, cv2.inpaint on the whole photo, encode PNG, write."""
    import cv2

    image_path, mask_path, out_path = paths
    rgb = np.asarray(Image.open(image_path).convert("RGB"))
    mask = np.asarray(Image.open(mask_path).convert("L"))
    result = cv2.inpaint(rgb, mask, 4, cv2.INPAINT_NS)
    Image.fromarray(result).save(out_path, format="PNG")


def plain_pool(images: Path, masks: Path, out: Path, processes: int) -> None:
    """The baseline of the near-limit comparison: a multiprocessing.Pool over the photos."""
    import multiprocessing

    out.mkdir(parents=True, exist_ok=True)
    tasks = [
        (str(photo), str(masks / f"{photo.stem}.png"), str(out / f"{photo.stem}.png"))
        for photo in sorted(images.glob("*.jpg"))
    ]
    with multiprocessing.Pool(processes) as pool:
        pool.map(_plain_task, tasks, chunksize=1)


def replicated_set(photos: PhotoSet, count: int) -> PhotoSet:
    """`count` photos made of the photo set's copies under new names (built once, cached)."""
    if count == photos.count:
        return photos
    root = photos.images.parent / f"x{count}"
    images, masks = root / "images", root / "masks"
    if len(list(images.glob("*.jpg"))) != count:
        for folder in (images, masks):
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
        sources = sorted(photos.images.glob("*.jpg"))
        for i in range(count):
            source = sources[i % len(sources)]
            stem = f"{source.stem}-{i:04d}"
            shutil.copyfile(source, images / f"{stem}.jpg")
            shutil.copyfile(photos.masks / f"{source.stem}.png", masks / f"{stem}.png")
    note = f"{count} photos: the {photos.count}-photo set repeated under new names. {photos.note}"
    return PhotoSet(images, masks, count, photos.mask_fractions, note)


def _has_flag(argv: list[str], flag: str) -> bool:
    done = subprocess.run([*argv, "--help"], capture_output=True, text=True)
    return flag in done.stdout


def contenders(
    photos: PhotoSet, iopaint_python: Path, workers: int
) -> tuple[list[Contender], list[str]]:
    """Our CLI (plus its cluster route when it exists) and IOPaint; notes on anything left out."""
    notes = []
    ours_exe = Path(sys.executable).with_name("lama-desktop")
    ours = [str(ours_exe)] if ours_exe.is_file() else [sys.executable, "-m", "lama_desktop"]
    batch = [
        *ours,
        "batch",
        str(photos.images),
        "--masks",
        str(photos.masks),
        "--out",
        "{out}",
        "--model",
        "opencv-ns",
        "--device",
        "cpu",
        "--hd-strategy",
        "crop",
        "--format",
        "png",
        "--json",
    ]
    found = [Contender("lama-desktop", batch)]
    if _has_flag([*ours, "batch"], "--local-workers"):
        for count in sorted({1, workers}):
            name = f"lama-desktop --local-workers {count}"
            found.append(Contender(name, [*batch, "--local-workers", str(count)]))
        # The same cv2 work as the plain pool: one inpaint on the whole photo.
        found.append(
            Contender(
                f"lama-desktop --local-workers {workers} --hd-strategy original",
                [*batch, "--local-workers", str(workers), "--hd-strategy", "original"],
            )
        )
    else:
        notes.append("lama-desktop batch has no --local-workers yet: cluster route not measured")
    pool = [sys.executable, __file__, "--plain-pool", str(photos.images), str(photos.masks)]
    found.append(Contender(f"plain-pool {workers}", [*pool, "{out}", str(workers)]))
    iopaint_exe = iopaint_python.with_name("iopaint")
    if iopaint_exe.is_file():
        found.append(
            Contender(
                "iopaint",
                [
                    str(iopaint_exe),
                    "run",
                    "--model=cv2",
                    "--device=cpu",
                    f"--image={photos.images}",
                    f"--mask={photos.masks}",
                    "--output={out}",
                ],
            )
        )
    else:
        notes.append(f"IOPaint not found at {iopaint_exe}: run benchmarks/iopaint_setup.sh")
    return found, notes


def compare_outputs(ours: Path, theirs: Path, masks: Path) -> dict[str, float]:
    """Pixel agreement of two output folders, inside and outside the masks."""
    inside_equal = inside_total = outside_differing = 0
    abs_diff_sum = 0
    for theirs_file in sorted(theirs.glob("*.png")):
        a = np.asarray(Image.open(ours / theirs_file.name).convert("RGB"), dtype=np.int16)
        b = np.asarray(Image.open(theirs_file).convert("RGB"), dtype=np.int16)
        erased = np.asarray(Image.open(masks / theirs_file.name).convert("L")) >= 127
        diff = np.abs(a - b).max(axis=2)
        inside_total += int(erased.sum())
        inside_equal += int((diff[erased] == 0).sum())
        abs_diff_sum += int(np.abs(a - b)[erased].sum())
        outside_differing += int((diff[~erased] > 0).sum())
    return {
        "masked_pixels_identical": round(inside_equal / max(inside_total, 1), 4),
        "masked_mean_abs_diff": round(abs_diff_sum / max(3 * inside_total, 1), 3),
        "unmasked_pixels_differing": outside_differing,
    }


def summarise(name: str, runs: list[RunResult], count: int) -> dict[str, object]:
    """Median wall time -> images/s; peak RSS median and max over the repeats."""
    walls = [r.wall_s for r in runs]
    peaks = [r.peak_rss for r in runs]
    return {
        "name": name,
        "wall_s": [round(w, 2) for w in walls],
        "wall_s_median": round(statistics.median(walls), 2),
        "images_per_s": round(count / statistics.median(walls), 3),
        "cpu_s_median": round(statistics.median(r.cpu_s for r in runs), 2),
        "peak_rss_mib_median": round(statistics.median(peaks) / 2**20, 1),
        "peak_rss_mib_max": round(max(peaks) / 2**20, 1),
    }


def worker_busy_share(run: RunResult, workers: int) -> float | None:
    """Sum of our per-photo worker seconds over (workers x wall): 1.0 = never idle."""
    files = (run.summary or {}).get("files")
    if not isinstance(files, list) or not files:
        return None
    busy = sum(float(f.get("seconds") or 0.0) for f in files)
    return round(busy / (workers * run.wall_s), 3)


def plain_pool_ratios(
    by_name: dict[str, dict[str, object]], runs: dict[str, list[RunResult]], workers: int
) -> dict[str, object]:
    """Our wall clock over the plain pool's, for each of our runs with `workers` workers."""
    pool = by_name.get(f"plain-pool {workers}")
    if pool is None:
        return {}
    ratios: dict[str, object] = {}
    for name, result in by_name.items():
        if not name.startswith(f"lama-desktop --local-workers {workers}"):
            continue
        ratio = float(result["wall_s_median"]) / float(pool["wall_s_median"])  # type: ignore[arg-type]
        shares = [s for s in (worker_busy_share(r, workers) for r in runs[name]) if s is not None]
        cpu_ratio = float(result["cpu_s_median"]) / float(pool["cpu_s_median"])  # type: ignore[arg-type]
        ratios[name] = {
            "wall_ratio": round(ratio, 3),
            "cpu_ratio": round(cpu_ratio, 3),
            "goal_within_1_25x": ratio <= PLAIN_POOL_GOAL,
            "worker_busy_share_median": statistics.median(shares) if shares else None,
        }
    return ratios


def benchmark(
    repeats: int,
    warmup: bool,
    iopaint_python: Path,
    count: int,
    workers: int,
    pool_only: bool = False,
) -> dict[str, object]:
    """Alternate every contender `repeats` times on the photo set and compare them to IOPaint."""
    photos = replicated_set(build_photo_set(), count)
    found, notes = contenders(photos, iopaint_python, workers)
    if pool_only:
        keep = (f"lama-desktop --local-workers {workers}", "plain-pool")
        found = [c for c in found if c.name.startswith(keep)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NO_COLOR": "1"}
    runs: dict[str, list[RunResult]] = {c.name: [] for c in found}
    failures: list[dict[str, object]] = []
    agreement: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        kept: dict[str, Path] = {}
        rounds = ([-1] if warmup else []) + list(range(repeats))
        for round_no in rounds:
            shift = max(round_no, 0) % len(found)
            for contender in found[shift:] + found[:shift]:
                out = Path(tmp, f"{contender.name.replace(' ', '_')}-{round_no}")
                argv = [arg.replace("{out}", str(out)) for arg in contender.argv]
                result = run_measured(argv, out, env)
                if result.returncode != 0 or result.outputs != photos.count:
                    failures.append(
                        {
                            "name": contender.name,
                            "returncode": result.returncode,
                            "outputs": result.outputs,
                            "stderr": result.stderr_tail,
                        }
                    )
                    continue
                if round_no >= 0:
                    runs[contender.name].append(result)
                if contender.name in kept:
                    shutil.rmtree(out)  # one output folder per contender is enough to compare
                else:
                    kept[contender.name] = out
        if "iopaint" in kept:
            agreement = {
                name: compare_outputs(folder, kept["iopaint"], photos.masks)
                for name, folder in kept.items()
                if name != "iopaint"
            }
    results = [summarise(name, r, photos.count) for name, r in runs.items() if r]
    report: dict[str, object] = {
        "benchmark": "batch",
        "photos": {
            "count": photos.count,
            "size": "1024x768",
            "folder": str(photos.images),
            "note": photos.note,
        },
        "cpu_count": os.cpu_count(),
        "repeats": repeats,
        "results": results,
        "failures": failures,
        "notes": notes,
    }
    by_name = {str(r["name"]): r for r in results}
    report["workers"] = workers
    report["vs_plain_pool"] = plain_pool_ratios(by_name, runs, workers)
    if "iopaint" in by_name:
        base = by_name["iopaint"]
        report["vs_iopaint"] = {
            name: {
                "throughput_ratio": round(r["images_per_s"] / base["images_per_s"], 2),
                "rss_ratio": round(r["peak_rss_mib_median"] / base["peak_rss_mib_median"], 3),
                "goal_throughput_3x": r["images_per_s"] >= 3 * base["images_per_s"],
                "goal_rss_under_half": r["peak_rss_mib_median"] < base["peak_rss_mib_median"] / 2,
                "outputs_vs_iopaint": agreement.get(name),
            }
            for name, r in by_name.items()
            if name != "iopaint"
        }
    return report


def main() -> None:
    """Parse flags, run the benchmark, print its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--iopaint-python",
        type=Path,
        default=Path(DEFAULT_IOPAINT_PYTHON),
        help="python of the IOPaint venv (default: %(default)s)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one repeat, no warm-up, 40 photos")
    parser.add_argument("--photos", type=int, default=200, help="photos per run (default 200)")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="local workers = pool processes"
    )
    parser.add_argument(
        "--pool-only", action="store_true", help="only our N-worker runs and the plain pool"
    )
    parser.add_argument("--no-warmup", action="store_true", help="skip the untimed first round")
    parser.add_argument("--plain-pool", nargs=4, metavar=("IMAGES", "MASKS", "OUT", "N"),
                        help=argparse.SUPPRESS)  # fmt: skip
    args = parser.parse_args()
    if args.plain_pool:
        images, masks, out, processes = args.plain_pool
        plain_pool(Path(images), Path(masks), Path(out), int(processes))
        return
    repeats = 1 if args.quick else args.repeats
    count = min(args.photos, 40) if args.quick else args.photos
    warmup = not (args.quick or args.no_warmup)
    report = benchmark(repeats, warmup, args.iopaint_python, count, args.workers, args.pool_only)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
