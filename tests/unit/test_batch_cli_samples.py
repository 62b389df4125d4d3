"""The bundled sample photos: small, licensed, each with a mask, and `make demo` cleans them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lama_desktop.cli import main

SAMPLES = Path(__file__).resolve().parents[2] / "resources" / "samples"
PHOTOS = sorted((SAMPLES / "images").iterdir())


def test_samples_are_small_licensed_and_masked() -> None:
    assert len(PHOTOS) >= 3
    licence = (SAMPLES / "LICENSE.md").read_text(encoding="utf-8")
    for photo in PHOTOS:
        assert photo.stat().st_size < 200_000, photo
        assert f"images/{photo.name}" in licence, f"{photo.name} has no licence entry"
        with Image.open(photo) as image:
            assert max(image.size) <= 800
            size = image.size
        with Image.open(SAMPLES / "masks" / f"{photo.stem}.png") as mask:
            assert mask.size == size
            covered = (np.array(mask) > 0).mean()
        assert 0.005 < covered < 0.25, f"{photo.name}: mask covers {covered:.1%}"


def test_demo_batch_cleans_every_sample(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo-out"
    argv = ["batch", str(SAMPLES / "images"), "--masks", str(SAMPLES / "masks")]
    assert main([*argv, "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["counts"]["done"] == len(PHOTOS)
    assert sorted(p.name for p in out.iterdir()) == [p.name for p in PHOTOS]
    for photo in PHOTOS:
        with Image.open(photo) as before, Image.open(out / photo.name) as after:
            assert after.format == before.format
            assert after.size == before.size
    # The lossless sample must come back bit-identical outside its mask.
    with Image.open(SAMPLES / "images" / "camera.png") as before:
        original = np.array(before)
    with Image.open(out / "camera.png") as after:
        cleaned = np.array(after)
    with Image.open(SAMPLES / "masks" / "camera.png") as mask_file:
        mask = np.array(mask_file) > 0
    np.testing.assert_array_equal(cleaned[~mask], original[~mask])
    assert not np.array_equal(cleaned[mask], original[mask])
