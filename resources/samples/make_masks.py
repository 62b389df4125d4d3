"""Draw the sample masks (white = erase) over real objects in the sample photos; run once."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent

Point = tuple[int, int]
# Each photo: polygons and ellipses (left, top, right, bottom) around the objects to erase,
# traced by hand on a 25-pixel grid over the photo.
SHAPES: dict[str, dict[str, list[list[Point]] | list[tuple[int, int, int, int]]]] = {
    "astronaut.jpg": {  # the space shuttle model, and the round mission patch on the suit
        "polygons": [
            [(390, 0), (442, 0), (447, 60), (452, 150), (468, 212), (472, 248), (458, 268),
             (422, 284), (378, 284), (352, 266), (349, 224), (368, 188), (374, 118), (384, 48)],
        ],
        "ellipses": [(130, 342, 216, 428)],
    },
    "camera.png": {  # the tower and the white tent in the background
        "polygons": [[(408, 112), (436, 112), (438, 184), (406, 184)]],
        "ellipses": [(312, 222, 350, 248)],
    },
    "coffee.webp": {  # the spoon: its bowl on the saucer and its handle beside the cup
        "polygons": [
            [(404, 62), (430, 68), (422, 130), (407, 200), (401, 250), (376, 246), (386, 196),
             (400, 128)],
        ],
        "ellipses": [(320, 238, 412, 330)],
    },
    "rocket.jpg": {  # the lightning tower right of the rocket
        "polygons": [[(438, 118), (455, 118), (474, 300), (482, 402), (426, 402), (432, 300)]],
        "ellipses": [],
    },
}  # fmt: skip


def draw_mask(size: tuple[int, int], shapes: dict) -> Image.Image:  # type: ignore[type-arg]
    """A black mask of `size` with the given shapes filled white."""
    mask = Image.new("L", size, 0)
    pen = ImageDraw.Draw(mask)
    for polygon in shapes["polygons"]:
        pen.polygon(polygon, fill=255)
    for box in shapes["ellipses"]:
        pen.ellipse(box, fill=255)
    return mask


def main() -> None:
    """Write masks/<stem>.png for every sample photo."""
    for name, shapes in SHAPES.items():
        with Image.open(HERE / "images" / name) as photo:
            size = photo.size
        target = HERE / "masks" / f"{Path(name).stem}.png"
        draw_mask(size, shapes).save(target, optimize=True)
        print(f"wrote {target.relative_to(HERE)} ({size[0]}x{size[1]})")


if __name__ == "__main__":
    main()
