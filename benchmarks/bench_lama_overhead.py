"""LaMa wrapper overhead: our engine vs IOPaint's LaMa class on the same TorchScript file.

The parent process (run in the project's venv) exports the full-size LaMa-architecture stand-in
once, prepares the same photo and mask at each size, then starts one child per side, alternating
ours and IOPaint's for a few rounds: ours under this interpreter, IOPaint's under the interpreter
of its own venv (--iopaint-python). Each child loads the model, sets the same thread count, warms
up, and times the public one-image call, whole-image strategy on both sides:
`run_with_strategy(model, image, mask, HDConfig(ORIGINAL))` and
`LaMa(image, mask, InpaintRequest(hd_strategy=ORIGINAL))`. The outputs are compared pixel by pixel
to show the two sides did the same work. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

DEFAULT_IOPAINT_PYTHON = "/opt/iopaint-venv/bin/python"
Infer = Callable[[np.ndarray, np.ndarray], np.ndarray]


# ---- children: each runs in its own process and its own venv ----------------------------------


def _load_ours(model_path: str, threads: int) -> Infer:
    from lama_desktop.engine.base import create_model
    from lama_desktop.engine.hd import HDConfig, HDStrategy, run_with_strategy

    model = create_model("lama", device="cpu", model_path=model_path, threads=threads)
    cfg = HDConfig(strategy=HDStrategy.ORIGINAL)
    return lambda image, mask: run_with_strategy(model, image, mask, cfg)


def _load_iopaint(model_path: str, threads: int) -> Infer:
    # IOPaint reads LAMA_MODEL_URL when iopaint.model.lama is imported; a path that exists is
    # loaded as it is (helper.load_jit_model), so no download and no md5 check happens.
    os.environ["LAMA_MODEL_URL"] = model_path
    import torch
    from iopaint.model.lama import LaMa
    from iopaint.schema import HDStrategy, InpaintRequest

    torch.set_num_threads(threads)
    model = LaMa(device=torch.device("cpu"))
    request = InpaintRequest(hd_strategy=HDStrategy.ORIGINAL)
    # Returns BGR (float when it pastes unmasked pixels back); run_child converts untimed.
    return lambda image, mask: model(image, mask, request)


def run_child(args: argparse.Namespace) -> None:
    """Time one side; print its JSON and save its outputs for the parent to compare."""
    import torch

    loader = _load_ours if args.side == "ours" else _load_iopaint
    started = time.perf_counter()
    infer = loader(args.model, args.threads)
    load_s = time.perf_counter() - started
    sizes: dict[str, dict[str, object]] = {}
    for size in args.sizes:
        image = np.load(args.inputs / f"image-{size}.npy")
        mask = np.load(args.inputs / f"mask-{size}.npy")
        for _ in range(args.warmup):
            infer(image, mask)
        wall_ms, cpu_ms = [], []
        for _ in range(args.runs):
            started, cpu_started = time.perf_counter(), time.process_time()
            result = infer(image, mask)
            wall_ms.append(round((time.perf_counter() - started) * 1000, 1))
            cpu_ms.append(round((time.process_time() - cpu_started) * 1000, 1))
        if args.side == "iopaint":
            result = result[:, :, ::-1].astype(np.uint8)  # exact: the values are integers
        np.save(args.outputs / f"{args.side}-{size}.npy", np.ascontiguousarray(result))
        sizes[str(size)] = {"wall_ms": wall_ms, "cpu_ms": cpu_ms}
    print(
        json.dumps(
            {
                "side": args.side,
                "python": sys.executable,
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "load_s": round(load_s, 2),
                "sizes": sizes,
            }
        )
    )


# ---- parent ------------------------------------------------------------------------------------


def _export_standin(cache: Path) -> Path:
    """Export the full ("big") stand-in once per version of lama_arch.py."""
    from lama_desktop.engine import lama_arch

    digest = hashlib.sha256(Path(lama_arch.__file__).read_bytes()).hexdigest()[:12]
    path = cache / f"standin-big-lama-{digest}.pt"
    if not path.is_file():
        partial = lama_arch.export_torchscript(cache / f"{path.name}.part", config="big")
        os.replace(partial, path)
    return path


def _write_inputs(folder: Path, sizes: list[int]) -> None:
    """One real photo and one brush-stroke mask per size, saved as .npy for both children."""
    from PIL import Image

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from data import build_photo_set, make_mask

    photo = Image.open(build_photo_set().images / "coffee.jpg").convert("RGB")
    rng = np.random.default_rng(7)
    for size in sizes:
        image = np.asarray(photo.resize((size, size), Image.Resampling.LANCZOS))
        mask, _ = make_mask((size, size), rng)
        np.save(folder / f"image-{size}.npy", image)
        np.save(folder / f"mask-{size}.npy", np.asarray(mask))


def _child(python: str, side: str, common: list[str], env: dict[str, str]) -> dict:
    command = [python, str(Path(__file__).resolve()), "--side", side, *common]
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{side} child failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _compare(outputs: Path, size: int) -> dict[str, float]:
    ours = np.load(outputs / f"ours-{size}.npy").astype(np.int16)
    theirs = np.load(outputs / f"iopaint-{size}.npy").astype(np.int16)
    diff = np.abs(ours - theirs)
    return {"max_abs_diff": int(diff.max()), "pixels_differing": float((diff > 0).mean())}


def _medians(runs: dict[str, list[dict]], size: str) -> dict[str, object]:
    """Median wall and CPU ms per side over every timed run of every round, and the ratios.

    CPU time (process_time) is reported next to wall time because on a shared machine other
    people's jobs stretch wall time but not the CPU time a process itself uses.
    """
    summary: dict[str, object] = {}
    medians: dict[str, float] = {}
    for side in ("ours", "iopaint"):
        for kind in ("wall_ms", "cpu_ms"):
            values = [t for report in runs[side] for t in report["sizes"][size][kind]]
            medians[f"{side}_{kind}"] = statistics.median(values)
            summary[f"{side}_{kind}"] = values
    for kind in ("wall_ms", "cpu_ms"):
        summary[f"ours_{kind}_median"] = round(medians[f"ours_{kind}"], 1)
        summary[f"iopaint_{kind}_median"] = round(medians[f"iopaint_{kind}"], 1)
    summary["ratio_wall"] = round(medians["ours_wall_ms"] / medians["iopaint_wall_ms"], 3)
    summary["ratio_cpu"] = round(medians["ours_cpu_ms"] / medians["iopaint_cpu_ms"], 3)
    return summary


def run_parent(args: argparse.Namespace) -> dict:
    """Alternate the two sides for a few rounds and summarise medians and the ratio."""
    from lama_desktop.engine.lama import default_threads

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from data import default_cache_dir

    cache = default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    model = _export_standin(cache)
    threads = args.threads or default_threads()
    result: dict = {"benchmark": "lama_overhead", "model_file": str(model), "threads": threads}
    with tempfile.TemporaryDirectory(prefix="lama-overhead-") as tmp:
        inputs, outputs = Path(tmp, "in"), Path(tmp, "out")
        inputs.mkdir()
        outputs.mkdir()
        _write_inputs(inputs, args.sizes)
        common = [
            "--model",
            str(model),
            "--threads",
            str(threads),
            "--runs",
            str(args.runs),
            "--warmup",
            str(args.warmup),
            "--inputs",
            str(inputs),
            "--outputs",
            str(outputs),
            "--sizes",
            *map(str, args.sizes),
        ]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        runs: dict[str, list[dict]] = {"ours": [], "iopaint": []}
        for _ in range(args.rounds):
            runs["ours"].append(_child(sys.executable, "ours", common, env))
            runs["iopaint"].append(_child(args.iopaint_python, "iopaint", common, env))
        same_work = {str(size): _compare(outputs, size) for size in args.sizes}
    for side, reports in runs.items():
        result[side] = {
            "torch": reports[0]["torch"],
            "threads": reports[0]["threads"],
            "python": reports[0]["python"],
            "load_s": [r["load_s"] for r in reports],
        }
    result["sizes"] = {
        str(size): {**_medians(runs, str(size)), "outputs_compared": same_work[str(size)]}
        for size in args.sizes
    }
    result["goal"] = "wall-clock ratio ours/IOPaint <= 1.0 at every size"
    result["goal_met"] = all(e["ratio_wall"] <= 1.0 for e in result["sizes"].values())
    return result


def main() -> None:
    """Parse flags and run as the parent (default) or as one side's child."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--iopaint-python",
        default=DEFAULT_IOPAINT_PYTHON,
        help="python of the IOPaint venv (default: %(default)s)",
    )
    parser.add_argument("--quick", action="store_true", help="512^2 only, 1 round")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--rounds", type=int, default=2, help="alternating child pairs")
    parser.add_argument("--runs", type=int, default=2, help="timed runs per size per child")
    # Untimed runs first: TorchScript's profiling executor re-optimises over the first calls.
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="0: physical cores")
    # Internal: set by the parent when it starts a child.
    parser.add_argument("--side", choices=["ours", "iopaint"], help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--inputs", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--outputs", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        run_child(args)
        return
    if args.quick:
        args.sizes, args.rounds = [512], 1
    if not Path(args.iopaint_python).is_file():
        sys.exit(f"{args.iopaint_python} not found: run benchmarks/iopaint_setup.sh first")
    print(json.dumps(run_parent(args), indent=2))


if __name__ == "__main__":
    main()
