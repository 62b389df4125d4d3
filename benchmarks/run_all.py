"""Runs every benchmarks/bench_*.py as its own process and prints their JSON as one document.

Flags are passed on only to the benchmarks whose --help lists them, so a benchmark without
--quick or --iopaint-python still runs. A benchmark that fails or prints no JSON is recorded with
its exit code and the end of its stderr; the exit status is 1 when any failed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _accepted_flags(script: Path) -> str:
    done = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True)
    return done.stdout


def _parse_json(stdout: str) -> object:
    """The whole output as JSON, else its last line (a benchmark may print progress first)."""
    try:
        return json.loads(stdout)
    except json.JSONDecodeError:
        lines = stdout.strip().splitlines()
        return json.loads(lines[-1]) if lines else None


def run_one(script: Path, args: argparse.Namespace) -> dict[str, object]:
    """Run one benchmark script; return its JSON result or why there is none."""
    help_text = _accepted_flags(script)
    argv = [sys.executable, str(script)]
    if args.quick and "--quick" in help_text:
        argv.append("--quick")
    if args.iopaint_python and "--iopaint-python" in help_text:
        argv += ["--iopaint-python", args.iopaint_python]
    started = time.perf_counter()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
        return {
            "argv": argv,
            "error": f"timed out after {args.timeout} s",
            "stderr": stderr[-2000:],
        }
    entry: dict[str, object] = {
        "argv": argv,
        "returncode": done.returncode,
        "seconds": round(time.perf_counter() - started, 1),
    }
    try:
        entry["result"] = _parse_json(done.stdout)
    except json.JSONDecodeError:
        entry["error"] = "output is not JSON"
        entry["stdout"] = done.stdout[-2000:]
    if done.returncode != 0:
        entry["error"] = entry.get("error", f"exit status {done.returncode}")
        entry["stderr"] = done.stderr[-2000:]
    return entry


def main() -> None:
    """Discover, run and collect every benchmark; print the combined JSON document."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="ask each benchmark for a short run")
    parser.add_argument("--iopaint-python", help="python of the IOPaint venv (for the comparisons)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="e.g. batch lama_overhead")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per benchmark")
    args = parser.parse_args()
    scripts = sorted(HERE.glob("bench_*.py"))
    if args.only:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in args.only]
        if not scripts:
            sys.exit(f"no benchmark named {' or '.join(args.only)} in {HERE}")
    document: dict[str, object] = {
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "cpu_count": os.cpu_count(),
            # Other jobs on the machine stretch wall-clock figures; record how busy it was.
            "load_average_at_start": (
                [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
            ),
        },
        "quick": args.quick,
        "benchmarks": {},
    }
    results: dict[str, dict[str, object]] = {}
    for script in scripts:
        print(f"running {script.name} ...", file=sys.stderr, flush=True)
        results[script.stem.removeprefix("bench_")] = run_one(script, args)
    document["benchmarks"] = results
    print(json.dumps(document, indent=2))
    sys.exit(1 if any("error" in entry for entry in results.values()) else 0)


if __name__ == "__main__":
    main()
