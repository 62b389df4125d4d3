#!/usr/bin/env bash
# GPU check (issue 8): CUDA worker start, fp16 autocast with the LaMa stand-in, one worker
# pinned per GPU, a 20-photo LaMa stand-in batch; prints one JSON document on stdout.
#
#   benchmarks/gpu_check.sh              # on a machine with an NVIDIA GPU, from the repo root
#   benchmarks/gpu_check.sh --allow-cpu  # smoke run without a GPU (tiny model, CPU)
#   benchmarks/gpu_check.sh --allow-cpu --steps environment,worker_start   # some steps only
#
# Runs with the first of $PYTHON, python3, .venv/bin/python whose torch sees CUDA (with
# --allow-cpu: the first that imports torch). Nothing is downloaded: the model is a random-
# weight stand-in traced by lama_desktop.engine.lama_arch, the photos are generated. Every
# step has a time limit; the whole run stays under 8 minutes.
set -u
cd "$(dirname "$0")/.." || exit 2
allow_cpu=0
steps=all
while [ $# -gt 0 ]; do
    case "$1" in
        --allow-cpu) allow_cpu=1 ;;
        --steps) steps="${2:-}"; shift ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "{\"error\": \"unknown argument: $1\"}"; exit 2 ;;
    esac
    shift
done
want=cuda
[ "$allow_cpu" = 1 ] && want=torch
chosen=""
for py in ${PYTHON:-} python3 .venv/bin/python; do
    command -v "$py" >/dev/null 2>&1 || continue
    if [ "$want" = cuda ]; then
        probe='import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'
    else
        probe='import torch'
    fi
    if timeout 120 "$py" -c "$probe" >/dev/null 2>&1; then chosen="$py"; break; fi
done
if [ -z "$chosen" ]; then
    detail=$(python3 -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' 2>&1 | tail -1 | tr '"\\' "''")
    echo "{\"error\": \"no python here has a torch that sees CUDA (pass --allow-cpu for a CPU smoke run)\", \"python3_torch\": \"$detail\"}"
    exit 1
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec timeout 470 "$chosen" - "$allow_cpu" "$steps" <<'PY'
"""The checks themselves; each section adds its figures (or its error) to one report."""

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPORT: dict = {"check": "gpu", "python": sys.version.split()[0]}
ALLOW_CPU = sys.argv[1] == "1"
STEPS = None if sys.argv[2] == "all" else set(sys.argv[2].split(","))
missing = []
for module in ("numpy", "PIL", "cv2", "zmq", "msgspec", "psutil", "torch"):
    try:
        __import__(module)
    except ImportError:
        missing.append(module)
if missing:
    print(json.dumps({**REPORT, "error": f"modules missing: {', '.join(missing)}"}))
    sys.exit(1)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
CONFIG = "big" if CUDA else "tiny"
# Without a GPU (the --allow-cpu smoke run) the same steps run small: it checks the script.
SIZES = ((512, 512), (768, 1024)) if CUDA else ((64, 64), (96, 128))
PHOTO = (768, 1024) if CUDA else (96, 128)
REPORT.update(torch=torch.__version__, torch_cuda=torch.version.cuda, device=DEVICE, config=CONFIG)


def section(name):
    """Run one check; an exception becomes that section's error, not the end of the report."""

    def wrap(fn):
        if STEPS is not None and name not in STEPS:
            return fn
        started = time.perf_counter()
        try:
            REPORT[name] = fn()
        except Exception as exc:  # a broken step must not hide the others' figures
            REPORT[name] = {"error": f"{type(exc).__name__}: {exc}"}
        REPORT[name + "_s"] = round(time.perf_counter() - started, 2)
        return fn

    return wrap


class NvmlSampler(threading.Thread):
    """pynvml utilisation and memory of every GPU, sampled every 0.2 s while a step runs."""

    def __init__(self):
        super().__init__(daemon=True)
        self.samples, self.stop = [], threading.Event()
        try:
            import pynvml

            pynvml.nvmlInit()
            self.nvml = pynvml
            count = pynvml.nvmlDeviceGetCount()
            self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        except Exception:
            self.nvml, self.handles = None, []

    def run(self):
        while not self.stop.wait(0.2):
            row = []
            for handle in self.handles:
                util = self.nvml.nvmlDeviceGetUtilizationRates(handle).gpu
                used = self.nvml.nvmlDeviceGetMemoryInfo(handle).used
                row.append((util, used))
            self.samples.append(row)

    def summary(self):
        if self.nvml is None:
            return {"nvml": "not available"}
        gpus = []
        for i in range(len(self.handles)):
            utils = [row[i][0] for row in self.samples] or [0]
            used = [row[i][1] for row in self.samples] or [0]
            gpus.append(
                {
                    "index": i,
                    "util_mean": round(sum(utils) / len(utils), 1),
                    "util_max": max(utils),
                    "memory_used_max_mib": round(max(used) / 2**20),
                }
            )
        return {"samples": len(self.samples), "gpus": gpus}


work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
models = work / "models"


@section("environment")
def _environment():
    from lama_desktop.cluster import hardware

    nvml = hardware._nvml()
    gpus = [{"nvml_index": i, "name": hardware.node_info().gpus[n].name}
            for n, (i, _h) in enumerate(hardware.visible_gpus())] if nvml else []  # fmt: skip
    return {
        "cuda_devices": torch.cuda.device_count() if CUDA else 0,
        "nvml_gpus": gpus,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }


@section("stand_in")
def _stand_in():
    from lama_desktop.engine.lama_arch import export_torchscript

    path = export_torchscript(models / "big-lama.pt", config=CONFIG, method="trace")
    return {"file": str(path), "mib": round(path.stat().st_size / 2**20, 1), "traced": True}


def _photo(height, width, seed):
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width]
    image = np.stack([xs * 255 // width, ys * 255 // height, (xs ^ ys) & 255], axis=2)
    image = np.clip(image + rng.integers(-25, 26, image.shape), 0, 255).astype(np.uint8)
    mask = np.zeros((height, width), np.uint8)
    for _ in range(4):
        r = rng.integers(height // 50 + 2, height // 15 + 3)
        cy, cx = rng.integers(r, height - r), rng.integers(r, width - r)
        mask[(ys - cy) ** 2 + (xs - cx) ** 2 <= r * r] = 255
    return image, mask


@section("fp16_autocast")
def _fp16():
    from lama_desktop.engine.base import create_model

    path = models / "big-lama.pt"
    results = {}
    for fp16 in (False, True):
        model = create_model("lama", device=DEVICE, model_path=path, fp16=fp16)
        for height, width in SIZES:
            image, mask = _photo(height, width, 1)
            model.inpaint(image, mask)  # warm-up: TorchScript optimises over the first calls
            if CUDA:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            times = []
            for _ in range(3 if CUDA else 1):
                started = time.perf_counter()
                out = model.inpaint(image, mask)
                if CUDA:
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - started)
            key = f"{'fp16' if fp16 else 'fp32'}_{width}x{height}"
            results[key] = {"ms": round(min(times) * 1000, 1), "out": out}
            if CUDA:
                results[key]["peak_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
        results["fp16_kept" if fp16 else "fp32_ran"] = bool(model.fp16) if fp16 else True
        model.close()
    for size in (f"{w}x{h}" for h, w in SIZES):
        a, b = results[f"fp32_{size}"].pop("out"), results[f"fp16_{size}"].pop("out")
        results[f"fp16_vs_fp32_{size}_mean_abs_diff"] = round(float(np.abs(a * 1.0 - b).mean()), 3)
    return results


def _serve_workers(devices):
    """Start one real worker per device (pinned as the agent pins them); READY times."""
    import zmq

    from lama_desktop.cluster.hardware import pin_mismatch
    from lama_desktop.cluster.protocol import Ready, decode
    from lama_desktop.cluster.supervisor import worker_command, worker_env

    context = zmq.Context()
    router = context.socket(zmq.ROUTER)
    endpoint = f"ipc://{work}/workers.sock"
    router.bind(endpoint)
    env_base = {**os.environ, "LAMA_MODELS_DIR": str(models), "LAMA_WORKER_LOG_LEVEL": "WARNING"}
    procs, started, found = [], time.perf_counter(), {}
    for i, device in enumerate(devices):
        env, worker_device = worker_env(device, env_base)
        procs.append(subprocess.Popen(worker_command(endpoint, f"w{i}", worker_device), env=env))
        found[f"w{i}"] = {"device": device, "pinned_to": env.get("CUDA_VISIBLE_DEVICES")}
    deadline = time.monotonic() + 150
    while any("ready_s" not in w for w in found.values()) and time.monotonic() < deadline:
        if not router.poll(500):
            continue
        ident, *frames = router.recv_multipart()
        msg, _ = decode(frames)
        worker = found[ident.decode()]
        if isinstance(msg, Ready) and "ready_s" not in worker:
            worker["ready_s"] = round(time.perf_counter() - started, 2)
            worker["torch_devices"] = [f"{d.name} {d.title} {d.uuid}".strip() for d in msg.devices]
            worker["models"] = msg.models
            worker["pin_mismatch"] = pin_mismatch(worker["device"], msg.devices)
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    router.close(0)
    context.term()
    return found


@section("worker_start")
def _workers():
    from lama_desktop.cluster.supervisor import plan_workers

    devices, _threads = plan_workers("auto", "cuda" if CUDA else "cpu")
    return {"workers": _serve_workers(devices[:2] if CUDA else ["cpu"])}


@section("batch_20")
def _batch():
    images, masks, out = work / "images", work / "masks", work / "out"
    images.mkdir()
    masks.mkdir()
    count = 20 if CUDA else 2
    for i in range(count):
        image, mask = _photo(*PHOTO, 10 + i)
        Image.fromarray(image).save(images / f"p{i:02d}.jpg", quality=95)
        Image.fromarray(mask).save(masks / f"p{i:02d}.png")
    argv = [sys.executable, "-m", "lama_desktop", "batch", str(images), "--masks", str(masks),
            "--out", str(out), "--model", "lama", "--device", DEVICE, "--json"]  # fmt: skip
    env = {**os.environ, "LAMA_MODELS_DIR": str(models), "LAMA_DATA_DIR": str(work / "data"),
           "LAMA_CONFIG_DIR": str(work / "config"), "LAMA_LOG_DIR": str(work / "logs")}  # fmt: skip
    sampler = NvmlSampler()
    sampler.start()
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=240)
    wall = time.perf_counter() - started
    sampler.stop.set()
    result = {"photos": count, "returncode": done.returncode, "wall_s": round(wall, 2)}
    try:
        summary = json.loads(done.stdout)
        result["counts"] = summary["counts"]
        seconds = [f["seconds"] for f in summary["files"] if f["status"] == "done"]
        result["photos_per_s"] = round(len(seconds) / wall, 3)
        result["worker_s_median"] = sorted(seconds)[len(seconds) // 2] if seconds else None
        result["nodes"] = sorted({str(f["node"]) for f in summary["files"]})
    except (ValueError, KeyError):
        result["stderr"] = done.stderr[-1500:]
    result["nvml"] = sampler.summary()
    return result


print(json.dumps(REPORT, indent=2))
failed = [k for k, v in REPORT.items() if isinstance(v, dict) and "error" in v]
sys.exit(1 if failed else 0)
PY
