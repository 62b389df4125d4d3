"""Pixel helpers of the editor: the changed box is exact, QImage views share the array."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lama_desktop.ui.editor.pixels import changed_box, rgb_to_qimage

pytestmark = pytest.mark.gui


@given(
    st.lists(
        st.tuples(st.integers(0, 39), st.integers(0, 29), st.integers(0, 2)),
        max_size=6,
    )
)
def test_changed_box_is_the_tightest_box_around_every_change(
    changes: list[tuple[int, int, int]],
) -> None:
    before = np.zeros((40, 30, 3), np.uint8)
    after = before.copy()
    for y, x, channel in changes:
        after[y, x, channel] = 9
    box = changed_box(before, after)
    if not changes:
        assert box is None
        return
    ys, xs = [c[0] for c in changes], [c[1] for c in changes]
    assert box == (min(ys), max(ys) + 1, min(xs), max(xs) + 1)


def test_qimage_views_the_pixels() -> None:
    rgb = np.zeros((3, 5, 3), np.uint8)
    rgb[1, 2] = (10, 20, 30)
    image = rgb_to_qimage(rgb)
    assert (image.width(), image.height()) == (5, 3)
    assert image.pixelColor(2, 1).getRgb()[:3] == (10, 20, 30)
    with pytest.raises(ValueError, match="uint8 HxWx3"):
        rgb_to_qimage(np.zeros((3, 5), np.uint8))
