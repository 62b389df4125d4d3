"""The in-process batch runner: bad files fail alone, outputs are atomic, stop means stop."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lama_desktop.engine.base import InpaintModel, create_model
from lama_desktop.engine.pipeline import JobSettings
from lama_desktop.engine.plan import JobOutcome, plan_batch
from lama_desktop.engine.runner import run_plan_in_process


def save(path: Path, pixels: np.ndarray, fmt: str = "PNG") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=fmt)
    path.write_bytes(out.getvalue())
    return path


def load(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.array(image)


def photo() -> np.ndarray:
    pixels = np.full((48, 64, 3), (40, 120, 200), np.uint8)
    pixels[10:30, 20:40] = (255, 255, 0)
    return pixels


def mask(width: int = 64, height: int = 48) -> np.ndarray:
    m = np.zeros((height, width), np.uint8)
    m[8:32, 18:42] = 255
    return m


@pytest.fixture(scope="module")
def model() -> InpaintModel:
    return create_model("opencv-ns", device="cpu")


@pytest.fixture
def batch(tmp_path: Path) -> tuple[Path, Path, Path]:
    images, masks, out = tmp_path / "images", tmp_path / "masks", tmp_path / "out"
    save(images / "good.png", photo())
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    save(images / "wrong_size.png", photo())
    save(images / "z_last.jpg", photo(), "JPEG")
    for name in ("good", "broken", "z_last"):
        save(masks / f"{name}.png", mask())
    save(masks / "wrong_size.png", mask(32, 24))
    return images, masks, out


def run(
    images: Path, masks: Path, out: Path, model: InpaintModel, stop_after: int | None = None
) -> tuple[list[JobOutcome], list[JobOutcome]]:
    seen: list[JobOutcome] = []
    plan = plan_batch(images, masks, out)
    returned = run_plan_in_process(
        plan,
        JobSettings(),
        model,
        seen.append,
        lambda: stop_after is not None and len(seen) >= stop_after,
    )
    return returned, seen


def test_bad_files_fail_alone(batch: tuple[Path, Path, Path], model: InpaintModel) -> None:
    images, masks, out = batch
    before = {p.name: p.read_bytes() for p in images.iterdir()}
    outcomes, seen = run(images, masks, out, model)
    assert outcomes == seen
    status = {o.image.name: o.status for o in outcomes}
    assert status == {
        "broken.jpg": "failed",
        "good.png": "done",
        "wrong_size.png": "failed",
        "z_last.jpg": "done",
    }
    reasons = {o.image.name: o.reason for o in outcomes if o.status == "failed"}
    assert re.search(r"broken\.jpg: the file is (truncated|corrupt)", reasons["broken.jpg"])
    assert "32x24" in reasons["wrong_size.png"] and "64x48" in reasons["wrong_size.png"]
    assert sorted(p.name for p in out.iterdir()) == ["good.png", "z_last.jpg"]
    result = load(out / "good.png")
    np.testing.assert_array_equal(result[mask() == 0], photo()[mask() == 0])
    assert not np.array_equal(result, photo())
    assert {p.name: p.read_bytes() for p in images.iterdir()} == before  # inputs untouched
    assert all(o.seconds >= 0 for o in outcomes)


def test_stop_cancels_the_rest(batch: tuple[Path, Path, Path], model: InpaintModel) -> None:
    images, masks, out = batch
    outcomes, _ = run(images, masks, out, model, stop_after=1)
    assert [o.status for o in outcomes] == ["failed", "cancelled", "cancelled", "cancelled"]
    assert not out.exists() or list(out.iterdir()) == []


def test_output_appearing_after_planning_is_kept(
    batch: tuple[Path, Path, Path], model: InpaintModel
) -> None:
    images, masks, out = batch
    plan = plan_batch(images, masks, out)
    (out).mkdir()
    (out / "good.png").write_bytes(b"someone else's result")
    outcomes = run_plan_in_process(plan, JobSettings(), model, lambda o: None, lambda: False)
    assert {o.image.name: o.status for o in outcomes}["good.png"] == "exists"
    assert (out / "good.png").read_bytes() == b"someone else's result"


def test_overwrite_replaces_earlier_results(
    batch: tuple[Path, Path, Path], model: InpaintModel
) -> None:
    images, masks, out = batch
    (out).mkdir()
    (out / "good.png").write_bytes(b"old")
    plan = plan_batch(images, masks, out, overwrite=True)
    outcomes = run_plan_in_process(plan, JobSettings(), model, lambda o: None, lambda: False)
    assert {o.image.name: o.status for o in outcomes}["good.png"] == "done"
    assert load(out / "good.png").shape == (48, 64, 3)


def test_no_temporary_files_left(batch: tuple[Path, Path, Path], model: InpaintModel) -> None:
    images, masks, out = batch
    run(images, masks, out, model)
    leftovers = [p for p in out.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]
    assert leftovers == []


def test_runner_refuses_a_job_that_would_write_over_its_photo(
    tmp_path: Path, model: InpaintModel
) -> None:
    from lama_desktop.engine.plan import BatchPlan, PlannedJob

    image = save(tmp_path / "photo.png", photo())
    save(tmp_path / "mask.png", mask())
    before = image.read_bytes()
    # A hand-made plan (plan_batch never makes one like this) with overwrite allowed.
    plan = BatchPlan([PlannedJob(image, tmp_path / "mask.png", image)], [], [], overwrite=True)
    outcomes = run_plan_in_process(plan, JobSettings(), model, lambda o: None, lambda: False)
    assert [o.status for o in outcomes] == ["failed"]
    assert "over an input" in outcomes[0].reason
    assert image.read_bytes() == before
