"""Prometheus metrics: the scheduler's (from its event bus) and an agent's (read at scrape time)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from lama_desktop.cluster.events import (
    Event,
    EventBus,
    JobChanged,
    JobState,
    NodeChanged,
    NodeState,
    NodeView,
    Snapshot,
)
from lama_desktop.cluster.records import FINAL

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Job seconds from an OpenCV edit (tens of ms) to a large LaMa photo on a CPU (minutes).
JOB_SECONDS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_WORKING = (NodeState.IDLE, NodeState.BUSY)


class SchedulerMetrics(Collector):
    """Counts the scheduler's jobs by model and node from its events; gauges from its views.

    `model_of(job_id)` names a job's model (the scheduler's records know it; events do not).
    """

    def __init__(
        self,
        bus: EventBus,
        model_of: Callable[[str], str | None],
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.registry = registry or CollectorRegistry()
        self._model_of = model_of
        labels = ["model", "node"]
        self.done = Counter("lama_jobs_done", "Jobs finished", labels, registry=self.registry)
        self.failed = Counter(
            "lama_jobs_failed", "Jobs given up (failed or poison)", labels, registry=self.registry
        )
        self.retried = Counter(
            "lama_jobs_retried",
            "Jobs sent back to the queue after a failed attempt or a lost node",
            labels,
            registry=self.registry,
        )
        self.seconds = Histogram(
            "lama_job_seconds",
            "Seconds of work per finished job, on its node",
            ["model"],
            buckets=JOB_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self._jobs: dict[str, tuple[JobState, str | None, str]] = {}  # id -> state, node, model
        self._nodes: dict[str, NodeView] = {}
        self.registry.register(self)
        self._apply(bus.snapshot())
        self.unsubscribe = bus.subscribe(self._on_event)

    def _node_name(self, node_id: str | None) -> str:
        if node_id is None:
            return ""
        view = self._nodes.get(node_id)
        return view.name if view is not None else node_id

    def _on_event(self, event: Event) -> None:
        if isinstance(event, JobChanged):
            self._on_job(event)
        elif isinstance(event, NodeChanged):
            if event.removed:
                self._nodes.pop(event.node.node_id, None)
            else:
                self._nodes[event.node.node_id] = event.node
        elif isinstance(event, Snapshot):
            self._apply(event)

    def _apply(self, snapshot: Snapshot) -> None:
        self._nodes = {n.node_id: n for n in snapshot.nodes}
        self._jobs = {
            j.job_id: (j.state, j.node, self._model_of(j.job_id) or "")
            for j in snapshot.jobs
            if j.state not in FINAL
        }

    def _on_job(self, event: JobChanged) -> None:
        job = event.job
        before = self._jobs.get(job.job_id)
        model = before[2] if before is not None else (self._model_of(job.job_id) or "")
        node = self._node_name(job.node)
        if job.state == JobState.DONE:
            self.done.labels(model, node).inc()
            if job.seconds is not None:
                self.seconds.labels(model).observe(job.seconds)
        elif job.state in (JobState.FAILED, JobState.POISON):
            self.failed.labels(model, node).inc()
        elif job.state == JobState.QUEUED and before is not None and before[0] == JobState.RUNNING:
            self.retried.labels(model, self._node_name(before[1])).inc()
        if job.state in FINAL:
            self._jobs.pop(job.job_id, None)
        else:
            self._jobs[job.job_id] = (job.state, job.node, model)

    def collect(self) -> Iterator[Metric]:
        """The gauges, computed from the latest views at scrape time."""
        states = [state for state, _node, _model in self._jobs.values()]
        yield _gauge("lama_queue_depth", "Jobs waiting for a node", states.count(JobState.QUEUED))
        yield _gauge("lama_jobs_running", "Jobs on a node now", states.count(JobState.RUNNING))
        slots = sum(n.slots for n in self._nodes.values() if n.state in _WORKING)
        yield _gauge("lama_workers", "Job slots of the working nodes", slots)
        nodes = GaugeMetricFamily("lama_nodes", "Nodes by state", labels=["state"])
        for state in NodeState:
            nodes.add_metric([state.value], sum(n.state == state for n in self._nodes.values()))
        yield nodes
        util = GaugeMetricFamily(
            "lama_gpu_utilisation_percent", "GPU use per node", labels=["node", "gpu"]
        )
        used = GaugeMetricFamily("lama_vram_used_bytes", "VRAM used", labels=["node", "gpu"])
        total = GaugeMetricFamily("lama_vram_total_bytes", "VRAM size", labels=["node", "gpu"])
        for view in self._nodes.values():
            for family, value in ((util, view.gpu_util), (used, view.vram_used),
                                  (total, view.vram_total)):  # fmt: skip
                if value is not None:
                    family.add_metric([view.name, "0"], float(value))
        yield from (util, used, total)


class AgentMetrics(Collector):
    """An agent's desktops, workers, queue and GPUs, read from the agent at scrape time."""

    def __init__(self, agent: Any, registry: CollectorRegistry | None = None) -> None:
        self.agent = agent
        self.registry = registry or CollectorRegistry()
        self.registry.register(self)

    def collect(self) -> Iterator[Metric]:
        from lama_desktop.cluster import hardware

        agent = self.agent
        supervisor = agent.supervisor
        slots = list(supervisor.slots.values()) if supervisor is not None else []
        greeted = sum(1 for s in agent.sessions.values() if s.greeted)
        yield _gauge("lama_agent_desktops", "Desktops connected (greeted)", greeted)
        yield _gauge("lama_agent_workers", "Worker processes", len(slots))
        yield _gauge("lama_agent_jobs_running", "Jobs on a worker now", len(agent.running))
        yield _gauge("lama_agent_queue_depth", "Jobs waiting for a worker", len(agent.queue))
        yield _counter("lama_agent_jobs_done", "Jobs the workers finished", agent.stats.jobs_done)
        yield _counter("lama_agent_worker_restarts", "Worker crashes", agent.stats.restarts)
        util = GaugeMetricFamily("lama_gpu_utilisation_percent", "GPU use", labels=["gpu"])
        used = GaugeMetricFamily("lama_vram_used_bytes", "VRAM used", labels=["gpu"])
        free = GaugeMetricFamily("lama_vram_free_bytes", "VRAM free", labels=["gpu"])
        for gpu in hardware.metrics().gpus:
            for family, value in ((util, gpu.util), (used, gpu.vram_used), (free, gpu.vram_free)):
                if value is not None:
                    family.add_metric([str(gpu.index)], float(value))
        yield from (util, used, free)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=float(value))


def _counter(name: str, doc: str, value: float) -> Metric:
    from prometheus_client.core import CounterMetricFamily

    return CounterMetricFamily(name, doc, value=float(value))


def render(registry: CollectorRegistry) -> bytes:
    """The Prometheus text format of everything in `registry`."""
    return generate_latest(registry)
