"""`batch_run.run_plan`: the batch through the scheduler, local workers and a paired node."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from lama_desktop.cluster.batch_run import paired_nodes, run_plan
from lama_desktop.engine.base import EngineError
from lama_desktop.engine.hd import HDConfig, HDStrategy
from lama_desktop.engine.pipeline import JobSettings
from lama_desktop.engine.plan import JobOutcome, plan_batch
from tests.integration.cluster_support import (
    PLUGIN_ENV,
    AgentProcess,
    expected_output,
    leftovers,
    make_folder,
    read_rgb,
)
from tests.plugins.crashy_engine import PAUSE_MARKER

pytestmark = pytest.mark.integration

SETTINGS = JobSettings(model="opencv-telea", hd=HDConfig(strategy=HDStrategy.CROP))


def test_local_workers_clean_a_folder_like_a_direct_engine_run(tmp_path: Path) -> None:
    images, masks = make_folder(tmp_path, 6)
    out = tmp_path / "out"
    seen: list[JobOutcome] = []
    lines: list[str] = []
    data = tmp_path / "data"
    data.mkdir()
    garbage = bytes(range(256)) * 32  # a damaged journal: a local batch never needs it
    (data / "journal.sqlite3").write_bytes(garbage)
    outcomes = run_plan(
        plan_batch(images, masks, out), SETTINGS, 2, [], seen.append, lambda: False,
        data_dir=data, progress=lines.append,
    )  # fmt: skip
    assert (data / "journal.sqlite3").read_bytes() == garbage
    assert not list(data.glob("journal.sqlite3?*"))  # not opened: no -wal, nothing moved aside
    assert [o.status for o in outcomes] == ["done"] * 6
    assert sorted(o.image for o in seen) == sorted(o.image for o in outcomes)
    assert lines and "photo(s)" in lines[0] and "photo/s" in lines[0]
    for outcome in outcomes:
        assert outcome.output is not None and outcome.node
        expected = expected_output(outcome.image, masks / outcome.image.name, SETTINGS)
        assert np.array_equal(read_rgb(outcome.output), expected)
    assert leftovers(out) == []


def test_zero_local_workers_uses_a_node_paired_by_link_then_by_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in PLUGIN_ENV.items():
        monkeypatch.setenv(key, value)
    images, masks = make_folder(tmp_path, 3)
    data = tmp_path / "data"
    agent = AgentProcess(tmp_path / "agent", "attic")
    try:
        first = run_plan(
            plan_batch(images, masks, tmp_path / "out1"), SETTINGS, 0, [agent.link],
            data_dir=data, progress=lambda line: None,
        )  # fmt: skip
        assert {(o.status, o.node) for o in first} == {("done", "attic")}
        [node] = paired_nodes(data)
        # The code was used up; the address alone now finds the paired node.
        again = run_plan(
            plan_batch(images, masks, tmp_path / "out2"), SETTINGS, 0, [node.address],
            data_dir=data, progress=lambda line: None,
        )  # fmt: skip
        assert {(o.status, o.node) for o in again} == {("done", "attic")}
    finally:
        agent.close()


def test_zero_local_workers_without_nodes_and_unknown_nodes_are_clear_errors(
    tmp_path: Path,
) -> None:
    images, masks = make_folder(tmp_path, 1)
    plan = plan_batch(images, masks, tmp_path / "out")
    with pytest.raises(EngineError, match="--node"):
        run_plan(plan, SETTINGS, 0, [], data_dir=tmp_path / "data")
    with pytest.raises(EngineError, match="not a paired node"):
        run_plan(plan, SETTINGS, 0, ["127.0.0.1:1"], data_dir=tmp_path / "data")


def test_an_unwritable_output_folder_stops_the_batch_before_any_worker_starts(
    tmp_path: Path,
) -> None:
    images, masks = make_folder(tmp_path, 2)
    (tmp_path / "a-file").write_bytes(b"")
    out = tmp_path / "a-file" / "out"
    with pytest.raises(
        EngineError, match="^" + re.escape(f"cannot create the output folder {out}: ")
    ):
        run_plan(plan_batch(images, masks, out), SETTINGS, 1, [], data_dir=tmp_path / "data")
    assert not (tmp_path / "data").exists()  # no key, no journal, no agent folder: nothing ran


def test_should_stop_cancels_the_batch_and_leaves_no_partial_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in PLUGIN_ENV.items():
        monkeypatch.setenv(key, value)
    # The first photo is quick, the others take 1.5 s: the stop comes while they run.
    images, masks = make_folder(tmp_path, 6, {i: PAUSE_MARKER for i in range(1, 6)})
    out = tmp_path / "out"
    seen: list[JobOutcome] = []
    slow = JobSettings(model="crashy", hd=HDConfig(strategy=HDStrategy.ORIGINAL))
    outcomes = run_plan(
        plan_batch(images, masks, out), slow, 1, [], seen.append,
        lambda: len(seen) >= 1, data_dir=tmp_path / "data", progress=lambda line: None,
    )  # fmt: skip
    statuses = [o.status for o in outcomes]
    assert statuses[0] == "done" and statuses.count("cancelled") >= 4
    assert set(statuses) <= {"done", "cancelled"}
    done = {o.output.name for o in outcomes if o.status == "done" and o.output is not None}
    assert {p.name for p in out.iterdir()} == done
    assert leftovers(out) == []


def test_default_local_workers_fill_the_cores_for_opencv_and_leave_torch_models_to_auto() -> None:
    import os

    from lama_desktop.cluster.batch_run import local_worker_plan

    cores = os.cpu_count() or 1
    assert local_worker_plan(None, JobSettings(model="opencv-ns", device="auto")) == (cores, "cpu")
    assert local_worker_plan(None, JobSettings(model="lama", device="auto")) == ("auto", "auto")
    assert local_worker_plan(3, JobSettings(model="opencv-ns", device="auto")) == (3, "auto")


def test_a_model_no_node_has_fails_the_batch_at_once_with_how_to_get_it(tmp_path: Path) -> None:
    images, masks = make_folder(tmp_path, 2)
    out = tmp_path / "out"
    plan = plan_batch(images, masks, out)
    with pytest.raises(EngineError, match=r"no node has the model 'lama'.*models download lama"):
        run_plan(plan, JobSettings(model="lama"), local_workers=1)
    assert not out.exists() or list(out.iterdir()) == []


def test_auto_model_is_resolved_before_routing(tmp_path: Path) -> None:
    images, masks = make_folder(tmp_path, 2)
    outcomes = run_plan(
        plan_batch(images, masks, tmp_path / "out"), JobSettings(model="auto"), local_workers=1
    )
    assert [o.status for o in outcomes] == ["done", "done"]  # OpenCV: no LaMa file here
