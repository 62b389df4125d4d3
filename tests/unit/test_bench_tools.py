"""The benchmark helpers measure what they claim: mask areas, pixel agreement, process-tree RSS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import psutil
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench_batch  # benchmarks/ is not a package
import data


def test_masks_are_deterministic_binary_and_within_the_area_range() -> None:
    first = [data.make_mask((320, 240), np.random.default_rng(5)) for _ in range(2)]
    assert np.array_equal(np.asarray(first[0][0]), np.asarray(first[1][0]))
    rng = np.random.default_rng(11)
    for _ in range(10):
        mask, fraction = data.make_mask((320, 240), rng)
        pixels = np.asarray(mask)
        assert set(np.unique(pixels)) <= {0, 255}
        assert data.MASK_AREA[0] <= fraction <= data.MASK_AREA[1]
        assert fraction == np.count_nonzero(pixels) / pixels.size


def test_cover_fills_the_target_size_without_distortion() -> None:
    tall = Image.new("L", (300, 900), 128)
    assert data._cover(tall, data.SIZE).size == data.SIZE
    assert data._cover(tall, data.SIZE).mode == "RGB"


def _write(folder: Path, name: str, pixels: np.ndarray) -> None:
    folder.mkdir(exist_ok=True)
    Image.fromarray(pixels).save(folder / name)


def test_compare_outputs_counts_differences_inside_and_outside_the_mask(tmp_path: Path) -> None:
    image = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    mask = np.zeros((40, 60), np.uint8)
    mask[10:20, 10:20] = 255
    _write(tmp_path / "masks", "a.png", mask)
    _write(tmp_path / "theirs", "a.png", image)
    _write(tmp_path / "same", "a.png", image)
    same = bench_batch.compare_outputs(tmp_path / "same", tmp_path / "theirs", tmp_path / "masks")
    assert same == {
        "masked_pixels_identical": 1.0,
        "masked_mean_abs_diff": 0.0,
        "unmasked_pixels_differing": 0,
    }
    changed = image.copy()
    changed[12, 12] ^= 0xFF  # inside the mask
    changed[30, 50, 0] ^= 0x01  # outside the mask
    _write(tmp_path / "changed", "a.png", changed)
    result = bench_batch.compare_outputs(
        tmp_path / "changed", tmp_path / "theirs", tmp_path / "masks"
    )
    assert result["masked_pixels_identical"] == 0.99
    assert result["masked_mean_abs_diff"] > 0
    assert result["unmasked_pixels_differing"] == 1


def test_tree_rss_includes_child_processes() -> None:
    me = psutil.Process()
    script = "import time; print('ready', flush=True); time.sleep(30)"
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "ready\n"  # started: its memory no longer grows
        child_rss = psutil.Process(child.pid).memory_info().rss
        assert bench_batch.tree_rss(me) >= me.memory_info().rss + child_rss * 9 // 10
    finally:
        child.kill()
        child.wait()
        child.stdout.close()


def test_run_measured_times_a_command_and_counts_its_outputs(tmp_path: Path) -> None:
    out = tmp_path / "out"
    script = (
        "import sys, pathlib; p = pathlib.Path(sys.argv[1]); p.mkdir();"
        "(p / 'a.png').write_bytes(b'x'); (p / 'b.png').write_bytes(b'x')"
    )
    result = bench_batch.run_measured([sys.executable, "-c", script, str(out)], out, {})
    assert result.returncode == 0
    assert result.outputs == 2
    assert result.wall_s > 0
    failed = bench_batch.run_measured(
        [sys.executable, "-c", "raise SystemExit('boom')"], tmp_path / "none", {}
    )
    assert failed.returncode == 1
    assert failed.outputs == 0
    assert "boom" in failed.stderr_tail


def test_plain_pool_writes_cv2s_whole_photo_result(tmp_path: Path) -> None:
    import cv2

    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    mask = np.zeros((48, 64), np.uint8)
    mask[10:20, 30:45] = 255
    _write(tmp_path / "images", "a.jpg", image)
    _write(tmp_path / "masks", "a.png", mask)
    bench_batch.plain_pool(tmp_path / "images", tmp_path / "masks", tmp_path / "out", 1)
    decoded = np.asarray(Image.open(tmp_path / "images" / "a.jpg").convert("RGB"))
    written = np.asarray(Image.open(tmp_path / "out" / "a.png"))
    np.testing.assert_array_equal(written, cv2.inpaint(decoded, mask, 4, cv2.INPAINT_NS))


def test_plain_pool_ratio_and_worker_busy_share() -> None:
    def run(wall: float, seconds: list[float]) -> bench_batch.RunResult:
        summary = {"files": [{"seconds": s} for s in seconds]}
        return bench_batch.RunResult(wall, wall, 1, 0, 4, "", summary)

    ours, pool = "lama-desktop --local-workers 2", "plain-pool 2"
    runs = {ours: [run(12.5, [5.0, 5.0, 5.0, 5.0])], pool: [run(10.0, [])]}
    by_name = {name: bench_batch.summarise(name, r, 4) for name, r in runs.items()}
    ratios = bench_batch.plain_pool_ratios(by_name, runs, 2)
    assert ratios == {
        ours: {
            "wall_ratio": 1.25,
            "cpu_ratio": 1.25,
            "goal_within_1_25x": True,
            "worker_busy_share_median": 0.8,  # 20 worker-seconds over 2 workers x 12.5 s
        }
    }


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_gpu_check_cpu_smoke_prints_json(tmp_path: Path) -> None:
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.sh"
    done = subprocess.run(
        [str(script), "--allow-cpu", "--steps", "environment,worker_start"],
        capture_output=True,
        text=True,
        timeout=220,
        env={**os.environ, "PYTHON": sys.executable, "LAMA_MODELS_DIR": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["device"] == "cpu" and report["environment"]["cuda_devices"] == 0
    (worker,) = report["worker_start"]["workers"].values()
    assert worker["ready_s"] > 0 and worker["torch_devices"] == ["cpu"]
    assert worker["pinned_to"] is None and worker["pin_mismatch"] is None
    assert "fp16_autocast" not in report  # not asked for
