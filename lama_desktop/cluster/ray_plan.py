"""How many Ray actors a cluster holds, and how a Ray-backed node describes itself."""

from __future__ import annotations

import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lama_desktop.cluster.hardware import engine_versions
from lama_desktop.cluster.protocol import GpuInfo, NodeInfo

# LaMa's convolutions on a CPU speed up to about four threads; OpenCV inpainting uses one.
DEFAULT_CPUS_PER_ACTOR = 4.0


@dataclass(frozen=True)
class ActorPlan:
    """One actor per GPU (num_gpus=1), or, on a cluster without GPUs, one per CPU share."""

    device: str = "auto"  # "cpu" keeps actors off the GPUs
    cpus_per_actor: float = DEFAULT_CPUS_PER_ACTOR
    max_actors: int | None = None

    def size(self, resources: Mapping[str, float]) -> tuple[int, dict[str, float], str]:
        """Actors for these cluster resources: how many, their Ray options, their device."""
        gpus = int(resources.get("GPU", 0)) if self.device != "cpu" else 0
        if gpus:
            count, options, device = gpus, {"num_gpus": 1.0, "num_cpus": 1.0}, "cuda"
        else:
            cpus = float(resources.get("CPU", 0.0))
            share = min(self.cpus_per_actor, cpus)  # a small cluster still gets one actor
            count = int(cpus // share) if share > 0 else 0
            options, device = {"num_cpus": share}, "cpu"
        if self.max_actors is not None:
            count = min(count, self.max_actors)
        return count, options, device

    def uses_gpus(self, actors: Sequence[Any]) -> int:
        """How many GPUs the ready actors hold (each GPU actor holds one)."""
        if self.device == "cpu":
            return 0
        return sum(1 for a in actors if a.info is not None and a.info.gpus)


def pool_label(actors: int, nodes: int) -> str:
    """What the Nodes panel shows as the node's device: "Ray: 2 actors on 1 node"."""
    actors_s, nodes_s = "s" * (actors != 1), "s" * (nodes != 1)
    return f"Ray: {actors} actor{actors_s} on {nodes} node{nodes_s}"


def cluster_info(
    address: str, actors: int, nodes: Mapping[str, NodeInfo], gpus: int = 0
) -> NodeInfo:
    """The node a desktop sees: the hardware of the Ray nodes that run our actors, summed."""
    infos = list(nodes.values())
    first = infos[0] if infos else None
    cards = [g for info in infos for g in info.gpus][:gpus]
    return NodeInfo(
        hostname=f"Ray cluster {address}",
        os=first.os if first else f"{platform.system()} {platform.release()}",
        cpu_model=first.cpu_model if first else "Ray cluster",
        cores=sum(i.cores for i in infos),
        ram_total=sum(i.ram_total for i in infos),
        gpus=[GpuInfo(name=g.name, vram_total=g.vram_total, index=i) for i, g in enumerate(cards)],
        engines=first.engines if first else engine_versions(),
        pool=pool_label(actors, len(infos)),
    )
