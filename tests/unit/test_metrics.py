"""SchedulerMetrics counts jobs from the event bus; the serving helpers guard the address."""

from __future__ import annotations

import asyncio
import socket
from types import SimpleNamespace

import pytest

from lama_desktop.cluster.events import (
    EventBus,
    JobChanged,
    JobState,
    JobView,
    NodeChanged,
    NodeState,
    NodeView,
)
from lama_desktop.cluster.metrics import SchedulerMetrics, render
from lama_desktop.cluster.serving import (
    ApiSwitch,
    ServeOptions,
    check_bind,
    is_loopback,
    parse_address,
)


def job(state: JobState, node: str | None = "n1", seconds: float | None = None) -> JobChanged:
    return JobChanged(JobView("j1", None, "(editor)", None, state, node=node, seconds=seconds))


def sample(text: bytes, line_start: str) -> float:
    for line in text.decode().splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {line_start!r} in:\n{text.decode()}")


def test_jobs_are_counted_by_model_and_node_and_retries_are_seen() -> None:
    bus = EventBus()
    metrics = SchedulerMetrics(bus, lambda job_id: "opencv-ns")
    gpu = NodeView("n1", "attic", "tcp://x", "RTX", NodeState.BUSY, slots=2, gpu_util=40.0,
                   vram_used=1000, vram_total=8000)  # fmt: skip
    bus.publish(NodeChanged(gpu))
    for event in (job(JobState.QUEUED, None), job(JobState.RUNNING), job(JobState.QUEUED),
                  job(JobState.RUNNING), job(JobState.DONE, seconds=0.3)):  # fmt: skip
        bus.publish(event)
    text = render(metrics.registry)
    labels = '{model="opencv-ns",node="attic"}'
    assert sample(text, f"lama_jobs_retried_total{labels}") == 1
    assert sample(text, f"lama_jobs_done_total{labels}") == 1
    assert sample(text, 'lama_job_seconds_bucket{le="0.5",model="opencv-ns"}') == 1
    assert sample(text, 'lama_job_seconds_bucket{le="0.25",model="opencv-ns"}') == 0
    assert sample(text, "lama_queue_depth ") == 0
    assert sample(text, "lama_workers ") == 2
    assert sample(text, 'lama_gpu_utilisation_percent{gpu="0",node="attic"}') == 40
    assert sample(text, 'lama_vram_total_bytes{gpu="0",node="attic"}') == 8000
    bus.publish(job(JobState.QUEUED, None))
    assert sample(render(metrics.registry), "lama_queue_depth ") == 1
    metrics.unsubscribe()
    bus.publish(job(JobState.FAILED))
    assert "lama_jobs_failed_total{" not in render(metrics.registry).decode()


def test_only_loopback_goes_without_a_token() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    check_bind("127.0.0.1", None)
    check_bind("0.0.0.0", "secret")
    with pytest.raises(ValueError, match="--token"):
        check_bind("0.0.0.0", None)


def test_metrics_addresses() -> None:
    assert parse_address("9464", 1) == ("127.0.0.1", 9464)
    assert parse_address(":9464", 1) == ("127.0.0.1", 9464)
    assert parse_address("0.0.0.0:9464", 1) == ("0.0.0.0", 9464)
    assert parse_address("[::1]:9464", 1) == ("::1", 9464)
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_address("host:port", 1)


def test_an_api_that_cannot_listen_leaves_no_metrics_listening_on_the_bus() -> None:
    # Each failed start (port taken) left its metrics subscribed: they then counted every job
    # event of every batch for as long as the app ran.
    bus = EventBus()
    scheduler = SimpleNamespace(events=bus, state=SimpleNamespace(jobs={}))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        options = ServeOptions(port=taken.getsockname()[1], model="opencv-ns")
        line = asyncio.run(ApiSwitch(scheduler).apply(True, options))
    assert line.startswith("The IOPaint API did not start")
    assert bus._listeners == []
