"""GPU routing: each worker pinned to one GPU, numbered as NVML numbers it; READY's devices."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import msgspec
import numpy as np
import pytest
import zmq

from lama_desktop.cluster import hardware
from lama_desktop.cluster import protocol as p
from lama_desktop.cluster.jobfiles import estimate_memory
from lama_desktop.cluster.records import JobRecord, NodeRecord
from lama_desktop.cluster.subprocess_pool import SubprocessPool
from lama_desktop.cluster.supervisor import WorkerSupervisor, plan_workers, worker_env
from lama_desktop.engine.hd import HDConfig, HDStrategy
from lama_desktop.engine.lama import LaMa
from lama_desktop.engine.pipeline import JobSettings
from tests.unit.test_supervisor import FakeProcess

UUIDS = ["GPU-aaaa-0000", "GPU-bbbb-1111", "GPU-cccc-2222"]


class ThreeGpus:
    """pynvml as a machine with three GPUs shows it (PCI bus order)."""

    @staticmethod
    def nvmlInit() -> None: ...

    @staticmethod
    def nvmlDeviceGetCount() -> int:
        return len(UUIDS)

    @staticmethod
    def nvmlDeviceGetHandleByIndex(index: int) -> int:
        return index

    @staticmethod
    def nvmlDeviceGetUUID(handle: int) -> bytes:
        return UUIDS[handle].encode()


@pytest.fixture
def three_gpus(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    hardware._nvml.cache_clear()
    monkeypatch.setitem(sys.modules, "pynvml", ThreeGpus)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    yield
    hardware._nvml.cache_clear()


@pytest.mark.usefixtures("three_gpus")
def test_each_cuda_worker_is_pinned_to_its_own_gpu() -> None:
    devices, _threads = plan_workers("auto", "auto")
    assert devices == ["cuda:0", "cuda:1", "cuda:2"]
    base = {"PATH": "/usr/bin", "CUDA_DEVICE_ORDER": "FASTEST_FIRST"}
    for number, device in enumerate(devices):
        env, worker_device = worker_env(device, base)
        assert worker_device == "cuda:0"  # the only GPU the worker sees
        assert env["CUDA_VISIBLE_DEVICES"] == str(number)
        assert env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"  # torch counts as NVML does
        assert env["PATH"] == "/usr/bin"
    assert base == {"PATH": "/usr/bin", "CUDA_DEVICE_ORDER": "FASTEST_FIRST"}  # not modified
    env, worker_device = worker_env("cpu", base)
    assert worker_device == "cpu" and "CUDA_VISIBLE_DEVICES" not in env


@pytest.mark.usefixtures("three_gpus")
def test_the_agents_own_cuda_visible_devices_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    # The agent itself was started with two of the three GPUs, by index and by UUID prefix.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,GPU-aaaa")
    assert hardware.gpu_count() == 2
    assert worker_env("cuda:0", {})[0]["CUDA_VISIBLE_DEVICES"] == "2"
    assert worker_env("cuda:1", {})[0]["CUDA_VISIBLE_DEVICES"] == "0"
    assert worker_env("cuda:2", {}) == ({}, "cuda:2")  # no such GPU: nothing pinned
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert hardware.gpu_count() == 0


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (None, [0, 1, 2]),
        ("", []),
        ("1", [1]),
        ("2, 0", [2, 0]),
        ("GPU-bbbb", [1]),
        ("GPU-", []),  # a prefix that names several GPUs ends the list
        ("0,7,1", [0]),  # CUDA stops at the first entry that names no GPU
        ("1,1,2", [1]),  # and at a repeated one
    ],
)
def test_cuda_visible_devices_parsing(spec: str | None, expected: list[int]) -> None:
    assert hardware.visible_indexes(3, UUIDS, spec) == expected


@pytest.mark.usefixtures("three_gpus")
def test_pin_mismatch_compares_torchs_gpu_with_nvmls() -> None:
    right = [p.TorchDevice("cpu"), p.TorchDevice("cuda:0", "H200", UUIDS[1], 1 << 30)]
    wrong = [p.TorchDevice("cpu"), p.TorchDevice("cuda:0", "H200", UUIDS[0], 1 << 30)]
    assert hardware.pin_mismatch("cuda:1", right) is None
    assert "GPU-aaaa-0000" in str(hardware.pin_mismatch("cuda:1", wrong))
    assert "sees 2 CUDA devices" in str(hardware.pin_mismatch("cuda:1", [*right, *wrong[1:]]))
    assert hardware.pin_mismatch("cpu", [p.TorchDevice("cpu")]) is None


def test_ready_carries_devices_and_old_readies_still_decode() -> None:
    info = p.NodeInfo("h", "Linux", "cpu", 2, 1 << 30)
    ready = p.Ready(
        node="w0", info=info, slots=1, models=["lama"], version="1",
        devices=[p.TorchDevice("cuda:0", "NVIDIA H200", "GPU-aaaa", 140 << 30)],
    )  # fmt: skip
    msg, _payload = p.decode(p.encode(ready))
    assert msg == ready
    # A peer from before the field existed sends READY without it.
    old = msgspec.msgpack.encode(
        {"op": "ready", "v": p.PROTOCOL_VERSION, "node": "w0", "info": info,
         "slots": 1, "models": [], "version": "0.9"}
    )  # fmt: skip
    msg, _payload = p.decode([old])
    assert isinstance(msg, p.Ready) and msg.devices == []


def test_a_cpu_worker_reports_the_cpu_without_importing_torch() -> None:
    assert hardware.torch_devices("cpu") == [p.TorchDevice("cpu")]


def _job(model: str, memory: int) -> JobRecord:
    return JobRecord("j", None, "(editor)", None, model, "auto", memory, seq=0)


def test_opencv_jobs_are_never_checked_against_vram() -> None:
    node = NodeRecord("n", "gpu box", "tcp://127.0.0.1:1", models=("lama", "opencv-ns"))
    node.has_gpu, node.vram_total, node.ram_total = True, 4 << 30, 64 << 30
    big = 10 << 30  # over the VRAM, under the RAM
    assert node.can_run(_job("opencv-ns", big))
    assert not node.can_run(_job("lama", big))
    assert not node.can_run(_job("opencv-ns", 100 << 30))  # the RAM still counts


def test_crop_estimates_use_the_masks_boxes_not_the_photo() -> None:
    height, width = 6000, 8000
    mask = np.zeros((height, width), np.uint8)
    mask[1000:1100, 2000:2300] = 255  # one stroke: its crop box is 356 x 556
    mask[5000:5050, 7000:7040] = 255
    lama = JobSettings(model="lama")
    whole = estimate_memory(lama, (height, width))
    cropped = estimate_memory(lama, (height, width), mask)
    assert cropped == LaMa.memory_estimate(356, 556) < whole / 50
    assert estimate_memory(lama, (height, width), np.zeros((height, width), np.uint8)) == 0
    original = JobSettings(model="lama", hd=HDConfig(strategy=HDStrategy.ORIGINAL))
    assert estimate_memory(original, (height, width), mask) == whole


@pytest.mark.usefixtures("three_gpus")
def test_a_worker_that_sees_another_gpu_than_its_pin_is_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The pool checks the first READY of a CUDA worker against NVML's numbering."""

    class Listener:
        changed = 0

        def workers_changed(self) -> None:
            self.changed += 1

    pool = SubprocessPool(max_message_bytes=p.FRAME_BYTES)
    pool.supervisor = WorkerSupervisor(lambda _id, _device: FakeProcess())
    pool.supervisor.set_count(["cuda:1", "cuda:2"], now=0.0)
    pool._listener = Listener()  # type: ignore[assignment]
    seen = {
        "w0": [p.TorchDevice("cuda:0", "H200", UUIDS[1], 1 << 30)],  # right: NVML's cuda:1
        "w1": [p.TorchDevice("cuda:0", "H200", UUIDS[0], 1 << 30)],  # wrong: NVML's cuda:0
    }
    with caplog.at_level("WARNING", logger="lama_desktop.cluster.subprocess_pool"):
        for worker_id, devices in seen.items():
            info = p.NodeInfo(hostname="h", os="linux", cpu_model="c", cores=2, ram_total=1)
            ready = p.Ready(
                node="n", info=info, slots=1, models=["opencv-ns"], version="1", devices=devices
            )
            pool._on_worker([zmq.Frame(worker_id.encode()), *map(zmq.Frame, p.encode(ready))])
    # Only warnings: an earlier test (test_app_logs) may leave the root logger at INFO.
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and warnings[0].startswith("worker w1:") and UUIDS[0] in warnings[0]
    assert pool._listener.changed == 2
