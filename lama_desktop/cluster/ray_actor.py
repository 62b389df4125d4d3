"""The Ray actor: one cached model per actor; jobs run by the same JobRunner as a worker process."""

from __future__ import annotations

import os
from typing import Any

from lama_desktop.cluster.protocol import Job, NodeInfo


class InpaintActor:
    """A Ray actor body (wrapped with `ray.remote` by the driver, so this module needs no Ray).

    It loads the agent's LAMA_PLUGINS, then keeps one `JobRunner`, and so one loaded model,
    for its whole life: the model is loaded by the first job and reused by the next ones.
    """

    def __init__(self, name: str, device: str, threads: int | None, plugins: str) -> None:
        if threads:
            # The actor's share of its node's cores, read by models that take `threads`.
            os.environ["LAMA_TORCH_THREADS"] = str(threads)
        from lama_desktop.cluster.worker import JobRunner, load_plugins

        load_plugins(plugins)
        self.runner = JobRunner(name, device)

    def ready(self) -> tuple[list[str], str, NodeInfo]:
        """The models present on this actor's node, the Ray node id and the node's hardware."""
        import ray

        from lama_desktop.cluster import hardware
        from lama_desktop.cluster.worker import available_models

        node = ray.get_runtime_context().get_node_id()
        return available_models(), node, hardware.node_info()

    def run(self, job: Job, image: bytes, mask: bytes) -> tuple[Any, list[bytes]]:
        """One job through engine.pipeline, exactly as a worker subprocess runs it."""
        return self.runner.run(job, memoryview(image), memoryview(mask))
