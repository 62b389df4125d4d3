"""What this machine has and how busy it is: CPU, RAM, NVIDIA GPUs (pynvml), models, engines."""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import os
import platform
import socket
from typing import Any

import psutil

from lama_desktop.cluster.protocol import GpuInfo, GpuMetrics, Metrics, NodeInfo, TorchDevice

log = logging.getLogger(__name__)

# Distributions whose versions a desktop shows next to a node (read without importing them:
# importing torch costs seconds and hundreds of megabytes in a process that never runs a model).
_ENGINE_DISTRIBUTIONS = {
    "opencv": ("opencv-python-headless", "opencv-python", "opencv-contrib-python"),
    "torch": ("torch",),
    "numpy": ("numpy",),
}


@functools.cache
def _nvml() -> Any | None:
    """The initialised pynvml module, or None when there is no NVIDIA driver (a normal case)."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception as exc:  # no library, no driver, no device: all mean "no GPUs here"
        log.debug("no NVIDIA GPUs: %s", exc)
        return None
    return pynvml


def visible_indexes(count: int, uuids: list[str], spec: str | None) -> list[int]:
    """NVML indexes of the GPUs CUDA numbers 0, 1, ... under CUDA_VISIBLE_DEVICES=`spec`.

    NVML lists GPUs in PCI bus order, which is CUDA's order under CUDA_DEVICE_ORDER=PCI_BUS_ID
    (what workers get). Entries are indexes or GPU-UUID prefixes; as CUDA does, the list ends
    at the first entry that names no GPU, or one already named.
    """
    if spec is None:
        return list(range(count))
    chosen: list[int] = []
    for entry in (part.strip() for part in spec.split(",")):
        matches = [i for i, uuid in enumerate(uuids) if entry and uuid.startswith(entry)]
        if entry.isdigit() and int(entry) < count:
            index = int(entry)
        elif entry.startswith("GPU-") and len(matches) == 1:
            index = matches[0]
        else:
            break
        if index in chosen:
            break
        chosen.append(index)
    return chosen


def _uuid(nvml: Any, handle: Any) -> str:
    try:
        uuid = nvml.nvmlDeviceGetUUID(handle)
    except Exception:
        return ""
    return uuid.decode() if isinstance(uuid, bytes) else str(uuid)


def _all_handles() -> list[Any]:
    nvml = _nvml()
    if nvml is None:
        return []
    try:
        return [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
    except Exception as exc:
        log.warning("could not list NVIDIA GPUs: %s", exc)
        return []


def visible_gpus() -> list[tuple[int, Any]]:
    """(NVML index, handle) of each GPU this process may use, in CUDA's numbering order."""
    handles = _all_handles()
    spec = os.environ.get("CUDA_VISIBLE_DEVICES")
    uuids = [_uuid(_nvml(), h) for h in handles] if spec is not None else []
    return [(i, handles[i]) for i in visible_indexes(len(handles), uuids, spec)]


def _gpu_handles() -> list[tuple[int, Any]]:
    """(cuda:N number, handle): the numbers workers and the scheduler route by."""
    return [(number, handle) for number, (_nvml_index, handle) in enumerate(visible_gpus())]


def gpu_count() -> int:
    """How many NVIDIA GPUs this process may use (0 without a driver)."""
    return len(_gpu_handles())


def cuda_pin_env(device: str) -> dict[str, str]:
    """Environment that pins a worker for `device` ("cuda:N") to that one GPU.

    In the worker the GPU is then cuda:0, and CUDA counts in PCI bus order as NVML does, so
    the GPU a worker runs on is the one this module reports as N. Empty for other devices, or
    when NVML cannot tell which GPU N is (the worker then sees what this process sees).
    """
    if not device.startswith("cuda"):
        return {}
    number = device.partition(":")[2] or "0"
    gpus = visible_gpus()
    if not number.isdigit() or int(number) >= len(gpus):
        return {}
    return {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": str(gpus[int(number)][0])}


def torch_devices(device: str) -> list[TorchDevice]:
    """The devices torch sees in this process (after CUDA_VISIBLE_DEVICES), for READY.

    A CPU worker reports only the CPU: importing torch to look would cost it seconds and
    hundreds of megabytes for a model (OpenCV) that never uses it.
    """
    if device == "cpu":
        return [TorchDevice(name="cpu")]
    from lama_desktop.engine import lama  # engine.lama owns every torch import

    return [TorchDevice(*fields) for fields in lama.visible_devices()]


def pin_mismatch(device: str, seen: list[TorchDevice]) -> str | None:
    """Why a worker started for `device` does not see the GPU NVML numbers so; None if it does."""
    if not device.startswith("cuda"):
        return None
    cuda = [d for d in seen if d.name.startswith("cuda")]
    if len(cuda) != 1:
        return f"worker for {device} sees {len(cuda)} CUDA devices, expected exactly one"
    number = device.partition(":")[2] or "0"
    gpus = visible_gpus()
    if not number.isdigit() or int(number) >= len(gpus) or not cuda[0].uuid:
        return None  # nothing to compare with
    expected = _uuid(_nvml(), gpus[int(number)][1])
    if expected and expected != cuda[0].uuid:
        return f"worker for {device} runs on {cuda[0].uuid}, but NVML's {device} is {expected}"
    return None


def cpu_model() -> str:
    """The CPU's marketing name where the OS tells it, else the architecture."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def engine_versions() -> dict[str, str]:
    """Installed versions of the inference libraries, without importing them."""
    versions = {}
    for engine, distributions in _ENGINE_DISTRIBUTIONS.items():
        for distribution in distributions:
            try:
                versions[engine] = importlib.metadata.version(distribution)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
    return versions


def models_present() -> list[str]:
    """Models this node can run now: OpenCV always, LaMa when its file is in the model store."""
    from lama_desktop.engine.modelstore import ModelStore

    models = ["opencv-ns", "opencv-telea"]
    try:
        if ModelStore().is_present("lama"):
            models.append("lama")
    except Exception as exc:  # a bad LAMA_MODELS_DIR must not stop the node from reporting
        log.warning("could not look for the LaMa model file: %s", exc)
    return models


def node_info() -> NodeInfo:
    """The machine's fixed description, sent once in READY."""
    gpus = []
    nvml = _nvml()
    for index, handle in _gpu_handles():
        assert nvml is not None
        try:
            name = nvml.nvmlDeviceGetName(handle)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
        except Exception as exc:
            log.warning("could not read GPU %d: %s", index, exc)
            continue
        name = name.decode() if isinstance(name, bytes) else str(name)
        gpus.append(GpuInfo(name=name, vram_total=int(memory.total), index=index))
    return NodeInfo(
        hostname=socket.gethostname(),
        os=f"{platform.system()} {platform.release()}",
        cpu_model=cpu_model(),
        cores=os.cpu_count() or 1,
        ram_total=int(psutil.virtual_memory().total),
        gpus=gpus,
        engines=engine_versions(),
    )


def _gpu_metrics(index: int, handle: Any) -> GpuMetrics:
    nvml = _nvml()
    assert nvml is not None
    reading = GpuMetrics(index=index)
    # Each reading may be unsupported on a given card; report what the driver gives.
    try:
        reading.util = float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
    except Exception:
        log.debug("GPU %d: no utilisation reading", index)
    try:
        memory = nvml.nvmlDeviceGetMemoryInfo(handle)
        reading.vram_used, reading.vram_free = int(memory.used), int(memory.free)
    except Exception:
        log.debug("GPU %d: no memory reading", index)
    try:
        reading.temp = float(nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU))
    except Exception:
        log.debug("GPU %d: no temperature reading", index)
    return reading


def metrics(busy_slots: int = 0, jobs_done: int = 0) -> Metrics:
    """Current load, sent with every heartbeat (cheap: no blocking CPU sampling)."""
    memory = psutil.virtual_memory()
    try:
        load1 = os.getloadavg()[0]
    except (AttributeError, OSError):  # Windows has no load average
        load1 = 0.0
    return Metrics(
        cpu_percent=float(psutil.cpu_percent(interval=None)),
        load1=float(load1),
        ram_used=int(memory.total - memory.available),
        ram_total=int(memory.total),
        gpus=[_gpu_metrics(index, handle) for index, handle in _gpu_handles()],
        busy_slots=busy_slots,
        jobs_done=jobs_done,
    )
