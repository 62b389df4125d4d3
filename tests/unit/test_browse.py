"""engine.browse: previews of large JPEGs are decoded at a reduced scale, so they are made."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lama_desktop.engine import browse
from lama_desktop.engine.imageio import ImageError


def test_a_jpeg_over_the_preview_limit_still_gets_a_preview_but_a_png_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 400 x 200 stands in for a 50 MP camera JPEG: over the limit at full size, but JPEG
    # decodes at 1/8 for a preview (50 x 25 here), well under it.
    monkeypatch.setattr(browse, "THUMBNAIL_PIXELS", 20_000)
    pixels = np.random.default_rng(1).integers(0, 255, (200, 400, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "big.jpg", quality=90)
    Image.fromarray(pixels).save(tmp_path / "big.png")
    preview = browse.thumbnail(tmp_path / "big.jpg", 32)
    assert preview.dtype == np.uint8 and max(preview.shape[:2]) == 32
    with pytest.raises(ImageError, match="too large for a preview"):
        browse.thumbnail(tmp_path / "big.png", 32)
