"""Filmstrip previews: `engine.browse.thumbnail` (JPEG draft decode) against the baseline of a
full decode with `read_image` and a resize, on camera-sized JPEGs. Prints JSON."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from lama_desktop.engine.browse import thumbnail
from lama_desktop.engine.imageio import read_image

SIDE = 64


def make_photos(folder: Path, count: int, size: tuple[int, int]) -> list[Path]:
    """Smooth gradients with noise, saved as JPEG at quality 90 (a camera's sort of file)."""
    width, height = size
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // width, y * 255 // height, (x + y) * 127 // (width + height)], -1)
    paths = []
    for index in range(count):
        noise = rng.integers(0, 32, (height, width, 3))
        rgb = np.clip(base + noise, 0, 255).astype(np.uint8)
        path = folder / f"photo{index:02d}.jpg"
        Image.fromarray(rgb).save(path, quality=90)
        paths.append(path)
    return paths


def full_decode_preview(path: Path, side: int) -> np.ndarray:
    """The baseline: decode every pixel, then shrink."""
    picture = read_image(path)
    image = Image.fromarray(picture.rgb)
    image.thumbnail((side, side))
    return np.array(image)


def seconds_per_photo(paths: list[Path], make: Callable[[Path, int], np.ndarray]) -> float:
    times = []
    for path in paths:
        started = time.perf_counter()
        make(path, SIDE)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer, smaller photos")
    args = parser.parse_args()
    count, size = (3, (3000, 2000)) if args.quick else (6, (6000, 4000))
    with tempfile.TemporaryDirectory() as tmp:
        print(f"writing {count} JPEGs of {size[0]}x{size[1]}…", file=sys.stderr)
        paths = make_photos(Path(tmp), count, size)
        baseline = seconds_per_photo(paths, full_decode_preview)
        draft = seconds_per_photo(paths, thumbnail)
    print(
        json.dumps(
            {
                "photos": count,
                "size": list(size),
                "baseline": "read_image (full decode) + resize",
                "full_decode_s_per_photo": round(baseline, 4),
                "thumbnail_s_per_photo": round(draft, 4),
                "speedup_vs_baseline": round(baseline / draft, 1),
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
