"""HTTP API benchmark: `lama-desktop serve` against IOPaint 1.6's server under concurrent clients.

Both servers get the same requests: POST /api/v1/inpaint with a 1024x768 photo of the bench set
(PNG, as IOPaint's web front end sends a canvas) and its mask, OpenCV Navier-Stokes radius 4
(IOPaint's `--model=cv2`; ours `--model cv2`, the same engine), IOPaint's default HD strategy
(crop). C clients (default 16) each send their share of N requests one after another, over
keep-alive connections. Every request carries a unique marker in pixels outside its mask, so an
answer that belongs to another request is caught ("mixed"); an answer must also keep every
pixel outside the mask. Latency is per request, wall-clock at the client. Prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data import build_photo_set  # benchmarks/ is not a package

REPO = Path(__file__).resolve().parents[1]
DEFAULT_IOPAINT_PYTHON = "/opt/iopaint-venv/bin/python"
MARKER_PIXELS = 8  # request id written into the first pixels of row 0 (kept out of the mask)


@dataclass
class Request:
    body: bytes
    rgb: np.ndarray
    keep: np.ndarray  # True outside the mask


def build_requests(count: int) -> list[Request]:
    """`count` distinct requests from the photo set: each photo with its id in its pixels."""
    photo_set = build_photo_set()
    photos = sorted(photo_set.images.iterdir())
    requests = []
    for i in range(count):
        path = photos[i % len(photos)]
        rgb = np.array(Image.open(path).convert("RGB"))
        mask = np.array(Image.open(photo_set.masks / f"{path.stem}.png").convert("L"))
        mask[0, :MARKER_PIXELS] = 0
        rgb[0, :MARKER_PIXELS] = np.frombuffer(i.to_bytes(MARKER_PIXELS * 3, "big"), np.uint8)[
            : MARKER_PIXELS * 3
        ].reshape(MARKER_PIXELS, 3)
        body = json.dumps({"image": _b64(rgb), "mask": _b64(mask), "sd_seed": i}).encode()
        requests.append(Request(body, rgb, mask <= 127))
    return requests


def _b64(array: np.ndarray) -> str:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


@dataclass
class Outcome:
    seconds: float
    ok: bool
    mixed: bool
    error: str = ""


async def _one(session: Any, url: str, request: Request) -> Outcome:
    started = time.perf_counter()
    try:
        async with session.post(
            url, data=request.body, headers={"Content-Type": "application/json"}
        ) as reply:
            data = await reply.read()
            status = reply.status
    except Exception as exc:
        return Outcome(time.perf_counter() - started, False, False, f"{type(exc).__name__}: {exc}")
    seconds = time.perf_counter() - started
    if status != 200:
        return Outcome(seconds, False, False, f"HTTP {status}: {data[:200]!r}")
    out = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    if out.shape != request.rgb.shape:
        return Outcome(seconds, False, True, f"shape {out.shape}")
    mixed = not np.array_equal(out[request.keep], request.rgb[request.keep])
    return Outcome(seconds, not mixed, mixed, "pixels outside the mask differ" if mixed else "")


async def load(url: str, requests: list[Request], clients: int) -> dict[str, Any]:
    """Send every request with `clients` concurrent clients; latency, throughput, errors."""
    import aiohttp

    queue: asyncio.Queue[Request] = asyncio.Queue()
    for request in requests:
        queue.put_nowait(request)
    outcomes: list[Outcome] = []
    timeout = aiohttp.ClientTimeout(total=600)
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:

        async def client() -> None:
            while not queue.empty():
                outcomes.append(await _one(session, url, queue.get_nowait()))

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        wall = time.perf_counter() - started
    latencies = sorted(o.seconds for o in outcomes if o.ok)
    errors = [o.error for o in outcomes if not o.ok]
    return {
        "requests": len(outcomes),
        "wall_s": round(wall, 3),
        "throughput_rps": round(sum(o.ok for o in outcomes) / wall, 3),
        "p50_s": round(_quantile(latencies, 0.50), 3) if latencies else None,
        "p99_s": round(_quantile(latencies, 0.99), 3) if latencies else None,
        "mean_s": round(statistics.fmean(latencies), 3) if latencies else None,
        "errors": len(errors),
        "mixed": sum(o.mixed for o in outcomes),
        "first_errors": errors[:3],
    }


def _quantile(values: list[float], q: float) -> float:
    """Nearest-rank quantile of sorted values."""
    index = min(len(values) - 1, max(0, int(np.ceil(q * len(values))) - 1))
    return values[index]


def _wait_up(url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url + "/api/v1/model", timeout=2) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def start_ours(port: int, workers: int | None, data_dir: Path) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "lama_desktop.cli", "serve", "--port", str(port),
            "--model", "cv2"]  # fmt: skip
    if workers is not None:
        argv += ["--local-workers", str(workers)]
    env = dict(os.environ, LAMA_DATA_DIR=str(data_dir))
    return subprocess.Popen(argv, env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip


def start_iopaint(python: Path, port: int, model_dir: Path) -> subprocess.Popen[bytes]:
    venv = python.parent.parent
    argv = [str(REPO / "benchmarks" / "iopaint_setup.sh"), "serve", str(venv), str(port),
            str(model_dir)]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _ready_workers(url: str, timeout: float = 60) -> None:
    """Our server answers before its workers are up; wait for them (IOPaint loads first)."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(url + "/metrics", timeout=5) as reply:
            for line in reply.read().decode().splitlines():
                if line.startswith("lama_workers ") and float(line.split()[1]) > 0:
                    return
        time.sleep(0.2)
    raise TimeoutError("our workers did not come up")


def measure(name: str, process: subprocess.Popen[bytes], url: str, args: Any,
            requests: list[Request]) -> dict[str, Any]:  # fmt: skip
    try:
        _wait_up(url, process, 180)
        if name == "serve":
            _ready_workers(url)
        asyncio.run(load(url + "/api/v1/inpaint", requests[: args.clients], args.clients))  # warm
        result = asyncio.run(load(url + "/api/v1/inpaint", requests, args.clients))
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    print(f"{name}: {result}", file=sys.stderr, flush=True)
    return result


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median throughput, plus every run's throughput and the totals."""
    ordered = sorted(runs, key=lambda r: r["throughput_rps"])
    median = dict(ordered[len(ordered) // 2])
    median["runs_rps"] = [r["throughput_rps"] for r in runs]
    median["errors_total"] = sum(r["errors"] for r in runs)
    median["mixed_total"] = sum(r["mixed"] for r in runs)
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=64, help="total requests per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per server, alternating")
    parser.add_argument("--local-workers", type=int, default=None, help="ours (default: cores)")
    parser.add_argument("--iopaint-python", type=Path, default=Path(DEFAULT_IOPAINT_PYTHON))
    parser.add_argument("--quick", action="store_true", help="32 requests, one run each")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.repeats = 32, 1
    requests = build_requests(args.requests)
    report: dict[str, Any] = {
        "clients": args.clients,
        "requests": args.requests,
        "repeats": args.repeats,
        "image": "1024x768 PNG, OpenCV Navier-Stokes radius 4, HD strategy crop",
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg()[0],
        "notes": [],
    }
    with_iopaint = args.iopaint_python.is_file()
    if not with_iopaint:
        report["notes"].append(
            f"IOPaint not found at {args.iopaint_python}: run benchmarks/iopaint_setup.sh"
        )
    runs: dict[str, list[dict[str, Any]]] = {"ours": [], "iopaint": []}
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        for repeat in range(args.repeats):
            # Alternate who goes first, so a change in the machine's load hits both.
            order = ["ours", "iopaint"] if repeat % 2 == 0 else ["iopaint", "ours"]
            for who in order:
                if who == "ours":
                    process = start_ours(18181, args.local_workers, Path(tmp) / "data")
                    url = "http://127.0.0.1:18181"
                    runs["ours"].append(measure("serve", process, url, args, requests))
                elif with_iopaint:
                    process = start_iopaint(args.iopaint_python, 18182, Path(tmp) / "models")
                    url = "http://127.0.0.1:18182"
                    runs["iopaint"].append(measure("IOPaint 1.6", process, url, args, requests))
    report["ours"] = _median_run(runs["ours"])
    if runs["iopaint"]:
        report["iopaint"] = _median_run(runs["iopaint"])
        theirs, mine = report["iopaint"], report["ours"]
        if theirs["throughput_rps"]:
            report["throughput_ratio"] = round(mine["throughput_rps"] / theirs["throughput_rps"], 2)
        if mine["p99_s"] and theirs["p50_s"]:
            report["ours_p99_over_iopaint_p50"] = round(mine["p99_s"] / theirs["p50_s"], 2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
