"""Hardware report without a GPU driver, without torch, and the zeroconf record."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import zmq

from lama_desktop.cluster import hardware
from lama_desktop.cluster.discovery import SERVICE_TYPE, agent_from_info, service_info
from lama_desktop.cluster.supervisor import plan_workers


def test_node_info_and_metrics_describe_this_machine() -> None:
    info = hardware.node_info()
    assert info.cores >= 1 and info.ram_total > 0 and info.hostname and info.cpu_model
    assert info.engines["opencv"] and info.engines["numpy"]
    assert all(gpu.vram_total > 0 for gpu in info.gpus)
    metrics = hardware.metrics(busy_slots=2, jobs_done=7)
    assert 0 < metrics.ram_used <= metrics.ram_total == info.ram_total
    assert 0.0 <= metrics.cpu_percent <= 100.0 * info.cores
    assert (metrics.busy_slots, metrics.jobs_done) == (2, 7)


def test_no_nvidia_driver_means_no_gpus_not_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoDriver:
        class NVMLError(Exception):
            pass

        @staticmethod
        def nvmlInit() -> None:
            raise NoDriver.NVMLError("NVML Shared Library Not Found")

    hardware._nvml.cache_clear()
    monkeypatch.setitem(sys.modules, "pynvml", NoDriver)
    try:
        assert hardware.gpu_count() == 0
        assert hardware.node_info().gpus == []
        assert hardware.metrics().gpus == []
    finally:
        hardware._nvml.cache_clear()


def test_fake_gpu_readings_are_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    class Memory:
        total, used, free = 8 << 30, 3 << 30, 5 << 30

    class Util:
        gpu = 42

    class FakeNvml:
        NVML_TEMPERATURE_GPU = 0

        @staticmethod
        def nvmlInit() -> None: ...

        @staticmethod
        def nvmlDeviceGetCount() -> int:
            return 1

        @staticmethod
        def nvmlDeviceGetHandleByIndex(index: int) -> str:
            return f"gpu{index}"

        @staticmethod
        def nvmlDeviceGetName(handle: str) -> bytes:
            return b"NVIDIA GeForce RTX 3060"

        @staticmethod
        def nvmlDeviceGetMemoryInfo(handle: str) -> Memory:
            return Memory()

        @staticmethod
        def nvmlDeviceGetUtilizationRates(handle: str) -> Util:
            return Util()

        @staticmethod
        def nvmlDeviceGetTemperature(handle: str, sensor: int) -> int:
            raise RuntimeError("not supported on this card")

    hardware._nvml.cache_clear()
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml)
    try:
        (gpu,) = hardware.node_info().gpus
        assert (gpu.name, gpu.vram_total, gpu.index) == ("NVIDIA GeForce RTX 3060", 8 << 30, 0)
        (reading,) = hardware.metrics().gpus
        assert (reading.util, reading.vram_used, reading.vram_free) == (42.0, 3 << 30, 5 << 30)
        assert reading.temp is None  # one unsupported reading does not lose the others
        assert plan_workers("auto", "auto") == (["cuda:0"], None)
        assert plan_workers(2, "auto") == (["cuda:0", "cuda:0"], None)
        assert plan_workers("auto", "cpu", cores=4) == (["cpu"], 4)
        assert plan_workers(1, "cuda:0") == (["cuda:0"], None)
        with pytest.raises(ValueError, match="1 GPU"):
            plan_workers(1, "cuda:1")
    finally:
        hardware._nvml.cache_clear()


def test_plan_workers_without_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardware, "gpu_count", lambda: 0)
    assert plan_workers("auto", "auto", cores=8) == (["cpu"], 8)  # one worker, every core
    assert plan_workers(2, "cpu", cores=8) == (["cpu", "cpu"], 4)
    assert plan_workers(3, "auto", cores=2) == (["cpu"] * 3, 1)
    assert plan_workers(0, "auto", cores=8) == ([], None)
    devices, threads = plan_workers("auto", "auto")
    assert devices == ["cpu"] and threads is not None and threads >= 1
    with pytest.raises(ValueError, match="no NVIDIA GPU"):
        plan_workers("auto", "cuda:1")
    with pytest.raises(ValueError, match="no NVIDIA GPU"):
        plan_workers(1, "cuda")
    with pytest.raises(ValueError):
        plan_workers(-1, "cpu")


def test_models_present_follow_the_model_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAMA_MODELS_DIR", str(tmp_path))
    assert "lama" not in hardware.models_present()
    assert "opencv-ns" in hardware.models_present()
    (tmp_path / "big-lama.pt").write_bytes(b"weights")
    assert "lama" in hardware.models_present()


def test_reporting_hardware_never_imports_torch_or_cv2() -> None:
    code = (
        "import sys; from lama_desktop.cluster import hardware; "
        "hardware.node_info(); hardware.metrics(); hardware.models_present(); "
        "print('torch' in sys.modules, 'cv2' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["False", "False"], out.stderr


def test_zeroconf_record_round_trip_without_touching_the_network() -> None:
    key = zmq.curve_keypair()[0].decode()
    info = service_info("studio.box", 7890, key, ["fe80::1", "192.168.1.5"])
    assert info.type == SERVICE_TYPE and info.name == f"studio-box.{SERVICE_TYPE}"
    assert b"code" not in info.properties  # the one-time code is never announced
    found = agent_from_info(info)
    assert found is not None
    assert (found.name, found.host, found.port, found.server_key) == (
        "studio.box",
        "192.168.1.5",
        7890,
        key,
    )
    assert agent_from_info(service_info("x", 7890, "not-a-key", ["10.0.0.1"])) is None
    assert agent_from_info(service_info("x", 7890, key, [])) is None
