"""Builds a folder of many tiny photos (64x48 PNG) with masks, for the 100,000-job batch run.

    python benchmarks/tiny_batch.py FOLDER [--count 100000]

Each photo is a colour gradient with noise and a mask of one brush dab (about 5 % of the photo,
like `data.MASK_AREA`); the set is the same for the same count (seeded with `data.SEED`).
Writing 100,000 pairs takes a minute or two; an existing complete folder is reused.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data import SEED  # benchmarks/ is not a package

SIZE = (64, 48)
VARIANTS = 97  # distinct photos, written under every name in turn (a prime: no visible cycle)


def _variant(rng: np.random.Generator) -> tuple[bytes, bytes]:
    width, height = SIZE
    yy, xx = np.mgrid[0:height, 0:width]
    tint = rng.integers(0, 256, 3)
    rgb = xx[..., None] * 3 + yy[..., None] * 2 + tint + rng.integers(0, 30, (height, width, 3))
    photo = Image.fromarray((rgb % 256).astype(np.uint8))
    mask = Image.new("L", SIZE, 0)
    cx, cy = rng.uniform(12, width - 12), rng.uniform(10, height - 10)
    ImageDraw.Draw(mask).ellipse((cx - 6, cy - 5, cx + 6, cy + 5), fill=255)
    return _png(photo), _png(mask)


def _png(image: Image.Image) -> bytes:
    from io import BytesIO

    out = BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def make_tiny_batch(root: Path, count: int) -> tuple[Path, Path]:
    """`count` photos in root/images and their masks (same names) in root/masks."""
    images, masks = root / "images", root / "masks"
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(exist_ok=True)
    done = root / f".complete-{count}"
    if done.exists():
        return images, masks
    rng = np.random.default_rng(SEED)
    variants = [_variant(rng) for _ in range(VARIANTS)]
    for i in range(count):
        photo, mask = variants[i % VARIANTS]
        name = f"p{i:06d}.png"
        (images / name).write_bytes(photo)
        (masks / name).write_bytes(mask)
    done.touch()
    return images, masks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--count", type=int, default=100_000)
    args = parser.parse_args()
    images, masks = make_tiny_batch(args.folder, args.count)
    print(f"{args.count} photos in {images}, masks in {masks}")


if __name__ == "__main__":
    main()
