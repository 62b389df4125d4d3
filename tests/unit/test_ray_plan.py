"""Ray actor sizing, the node a Ray cluster shows as, and `--ray` without Ray installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lama_desktop.cluster.protocol import GpuInfo, NodeInfo
from lama_desktop.cluster.ray_plan import ActorPlan, cluster_info, pool_label
from lama_desktop.cluster.ray_pool import RAY_MISSING, RayPool


def test_one_actor_per_gpu_with_one_gpu_each() -> None:
    count, options, device = ActorPlan().size({"CPU": 32.0, "GPU": 3.0})
    assert (count, options["num_gpus"], device) == (3, 1.0, "cuda")


def test_cpu_actors_take_their_share_of_the_cluster() -> None:
    assert ActorPlan(cpus_per_actor=4).size({"CPU": 10.0}) == (2, {"num_cpus": 4}, "cpu")
    assert ActorPlan(cpus_per_actor=1).size({"CPU": 2.0})[0] == 2
    # A cluster smaller than one share still gets an actor, with what it has.
    assert ActorPlan(cpus_per_actor=4).size({"CPU": 2.0}) == (1, {"num_cpus": 2.0}, "cpu")
    assert ActorPlan().size({})[0] == 0


def test_device_cpu_keeps_actors_off_gpus_and_max_actors_caps() -> None:
    assert ActorPlan("cpu", 2).size({"CPU": 8.0, "GPU": 2.0}) == (4, {"num_cpus": 2}, "cpu")
    assert ActorPlan(max_actors=1).size({"CPU": 8.0, "GPU": 2.0})[0] == 1


def test_pool_label_reads_as_the_nodes_panel_shows_it() -> None:
    assert pool_label(1, 1) == "Ray: 1 actor on 1 node"
    assert pool_label(4, 2) == "Ray: 4 actors on 2 nodes"


def test_cluster_info_sums_the_nodes_running_actors() -> None:
    gpu = GpuInfo(name="RTX", vram_total=8 << 30, index=1)
    node = NodeInfo(hostname="n", os="Linux", cpu_model="Xeon", cores=8, ram_total=16 << 30,
                    gpus=[gpu, gpu])  # fmt: skip
    info = cluster_info("head:6379", 3, {"a": node, "b": node}, gpus=3)
    assert (info.cores, info.ram_total, info.pool) == (16, 32 << 30, "Ray: 3 actors on 2 nodes")
    assert [g.index for g in info.gpus] == [0, 1, 2] and info.gpus[0].name == "RTX"


def test_validate_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # find_spec then reports it missing
    pool = RayPool("auto", ActorPlan(), max_message_bytes=1 << 20)
    with pytest.raises(ValueError, match=r"pip install 'lama-desktop\[ray\]'"):
        pool.validate()


def test_lama_agent_ray_without_ray_says_what_to_install_and_exits_2(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['ray'] = None; "
        "from lama_desktop.cluster.agent_cli import main; sys.exit(main())"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, "--ray", "auto", "--bind", "tcp://127.0.0.1:0",
         "--data-dir", str(tmp_path), "--no-announce"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip() == f"lama-agent: {RAY_MISSING}"  # one line
    assert done.stdout == ""
