"""Builds the benchmark photo set: 20 photos at 1024x768 with generated masks of 4-8 % area.

The photos are the ones scikit-image bundles inside its wheel. scikit-image is not a project
dependency: the wheel is fetched once with `pip download`, its photos are extracted into a cache
folder outside the repository, and only Pillow and numpy are used from then on.

scikit-image 0.26 bundles 19 natural photos; the 20th image is a mirrored crop of the largest one
(`retina`), so the set holds 19 distinct photos plus one derived image.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageOps

SKIMAGE_VERSION = "0.26.0"
SIZE = (1024, 768)
MASK_AREA = (0.04, 0.08)
SEED = 20261128
# The natural photos in skimage/data; test charts, logos and drawings are left out.
PHOTOS = (
    "astronaut.png",
    "brick.png",
    "camera.png",
    "cell.png",
    "chelsea.png",
    "clock_motion.png",
    "coffee.png",
    "coins.png",
    "grass.png",
    "gravel.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "moon.png",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "page.png",
    "retina.jpg",
    "rocket.jpg",
    "text.png",
)
DERIVED = "retina_mirrored_crop"


@dataclass(frozen=True)
class PhotoSet:
    """A folder pair ready for `lama-desktop batch` and `iopaint run` (masks matched by stem)."""

    images: Path
    masks: Path
    count: int
    mask_fractions: dict[str, float]
    note: str


def default_cache_dir() -> Path:
    """Cache folder outside the repository (override with LAMA_BENCH_CACHE)."""
    env = os.environ.get("LAMA_BENCH_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lama-desktop-bench"


def _extract_photos(cache: Path) -> Path:
    """Fetch the scikit-image wheel once and extract its bundled photos; return their folder."""
    target = cache / f"skimage-{SKIMAGE_VERSION}-photos"
    if all((target / name).is_file() for name in PHOTOS):
        return target
    with tempfile.TemporaryDirectory(prefix="skimage-wheel-") as tmp:
        # --no-deps: only the wheel's data files are wanted, nothing is installed.
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary=:all:",
                f"scikit-image=={SKIMAGE_VERSION}",
                "-d",
                tmp,
            ],
            check=True,
        )
        wheel = next(Path(tmp).glob("scikit_image-*.whl"))
        target.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheel) as archive:
            for name in PHOTOS:
                data = archive.read(f"skimage/data/{name}")
                partial = target / (name + ".part")
                partial.write_bytes(data)
                os.replace(partial, target / name)
    return target


def _cover(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Scale to cover `size`, then centre-crop: no letterboxing, no distortion."""
    return ImageOps.fit(image.convert("RGB"), size, method=Image.Resampling.LANCZOS)


def make_mask(size: tuple[int, int], rng: np.random.Generator) -> tuple[Image.Image, float]:
    """Brush-like strokes and blobs until the erased area lies in MASK_AREA; white = erase."""
    while True:
        mask, fraction = _draw_strokes(size, rng, target=rng.uniform(*MASK_AREA))
        # The last shape may overshoot the range: draw again rather than clip a shape.
        if fraction <= MASK_AREA[1]:
            return mask, fraction


def _draw_strokes(
    size: tuple[int, int], rng: np.random.Generator, target: float
) -> tuple[Image.Image, float]:
    width, height = size
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    fraction = 0.0
    while fraction < target:
        cx, cy = rng.uniform(0.1, 0.9) * width, rng.uniform(0.1, 0.9) * height
        if rng.random() < 0.5:
            # A blob, like a user circling an object.
            rx, ry = rng.uniform(15, 60), rng.uniform(15, 60)
            draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=255)
        else:
            # A short brush stroke.
            points = [(cx, cy)]
            for _ in range(int(rng.integers(2, 5))):
                cx += rng.uniform(-80, 80)
                cy += rng.uniform(-80, 80)
                points.append((cx, cy))
            draw.line(points, fill=255, width=int(rng.integers(12, 30)), joint="curve")
        fraction = float(np.count_nonzero(np.asarray(mask))) / (width * height)
    return mask, fraction


def _sources(photo_dir: Path) -> list[tuple[str, Image.Image]]:
    sources = [(Path(name).stem, Image.open(photo_dir / name)) for name in PHOTOS]
    retina = Image.open(photo_dir / "retina.jpg")
    # The 20th image: the upper-left 3/4 of `retina`, mirrored, so its pixels differ from #17.
    crop = retina.crop((0, 0, retina.width * 3 // 4, retina.height * 3 // 4))
    sources.append((DERIVED, ImageOps.mirror(crop)))
    return sources


def _fingerprint() -> str:
    recipe = json.dumps([SKIMAGE_VERSION, SIZE, MASK_AREA, SEED, PHOTOS, DERIVED])
    code = Path(__file__).read_bytes()
    return hashlib.sha256(recipe.encode() + code).hexdigest()[:12]


def build_photo_set(cache: Path | None = None) -> PhotoSet:
    """Return the photo set, building it once per recipe into the cache folder."""
    cache = cache or default_cache_dir()
    root = cache / f"photos-{SIZE[0]}x{SIZE[1]}-{_fingerprint()}"
    manifest_path = root / "manifest.json"
    if not manifest_path.is_file():
        photo_dir = _extract_photos(cache)
        images, masks = root / "images", root / "masks"
        images.mkdir(parents=True, exist_ok=True)
        masks.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(SEED)
        fractions: dict[str, float] = {}
        for stem, source in _sources(photo_dir):
            # JPEG quality 95 on both sides: IOPaint (cv2.imwrite) and our CLI write JPEG at 95.
            _cover(source, SIZE).save(images / f"{stem}.jpg", quality=95)
            mask, fractions[stem] = make_mask(SIZE, rng)
            mask.save(masks / f"{stem}.png")
        manifest = {"fractions": fractions, "note": __doc__.split("\n\n")[-1].strip()}
        manifest_path.write_text(json.dumps(manifest, indent=1))
    manifest = json.loads(manifest_path.read_text())
    return PhotoSet(
        images=root / "images",
        masks=root / "masks",
        count=len(manifest["fractions"]),
        mask_fractions=manifest["fractions"],
        note=" ".join(manifest["note"].split()),
    )


def main() -> None:
    """Build (or find) the photo set and print where it lies, as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=None, help="cache folder")
    args = parser.parse_args()
    photo_set = build_photo_set(args.cache)
    fractions = list(photo_set.mask_fractions.values())
    print(
        json.dumps(
            {
                "images": str(photo_set.images),
                "masks": str(photo_set.masks),
                "count": photo_set.count,
                "mask_area_min": round(min(fractions), 4),
                "mask_area_max": round(max(fractions), 4),
                "note": photo_set.note,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
