"""Render lama-desktop.svg to the PNG, .ico (Windows) and .icns (macOS) icons the bundle needs.

Usage: python installers/make_icons.py OUT_DIR. Qt draws the SVG (offscreen, no display
needed) and Pillow writes the multi-size containers.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

SVG = Path(__file__).resolve().parents[1] / "lama_desktop" / "resources" / "lama-desktop.svg"


def render(size: int, out: Path) -> Path:
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    QSvgRenderer(str(SVG)).render(painter)
    painter.end()
    path = out / f"lama-desktop-{size}.png"
    if not image.save(str(path)):
        raise SystemExit(f"make_icons: could not write {path}")
    return path


def main(out_dir: str) -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PIL import Image
    from PySide6.QtGui import QGuiApplication

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
    big = Image.open(render(1024, out))
    big.save(out / "lama-desktop.png")
    big.save(out / "lama-desktop.ico", sizes=[(s, s) for s in (16, 24, 32, 48, 64, 128, 256)])
    big.save(out / "lama-desktop.icns")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
