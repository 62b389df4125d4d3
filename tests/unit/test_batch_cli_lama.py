"""`--model auto` picks LaMa once its file is installed, and the batch runs it end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lama_desktop.cli import main
from lama_desktop.engine.lama_arch import export_torchscript
from lama_desktop.engine.modelstore import ModelStore

pytestmark = pytest.mark.slow  # imports torch and exports a TorchScript model


def test_auto_uses_installed_lama(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # LAMA_MODELS_DIR points at a fresh folder (tests/conftest.py); install a tiny stand-in.
    ModelStore().install_local("lama", export_torchscript(tmp_path / "tiny.pt", config="tiny"))
    images, masks, out = tmp_path / "in", tmp_path / "masks", tmp_path / "out"
    images.mkdir()
    masks.mkdir()
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(images / "a.png")
    mask = np.zeros((40, 56), np.uint8)
    mask[8:24, 10:30] = 255
    Image.fromarray(mask).save(masks / "a.png")

    assert main(["batch", str(images), "--masks", str(masks), "--out", str(out), "--json"]) == 0
    captured = capsys.readouterr()
    assert "warning" not in captured.err  # LaMa is there: no fallback notice
    summary = json.loads(captured.out)
    assert summary["settings"]["model"] == "lama"
    assert summary["counts"]["done"] == 1
    with Image.open(out / "a.png") as result:
        cleaned = np.array(result)
    np.testing.assert_array_equal(cleaned[mask == 0], pixels[mask == 0])
    assert not np.array_equal(cleaned[mask > 0], pixels[mask > 0])
