"""Take the README screenshots of the real app under Xvfb: editor, Nodes panel, Queue panel.

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots] [--keep]

Two sessions: a 1366x768 screen at 100 % (editor.png, nodes.png, queue.png) and a 1600x1000
screen at 200 % (QT_SCALE_FACTOR=2, so 800x500 logical pixels: *-200.png), the small and the
high-DPI screens the window must fit.

Needs Xvfb, ImageMagick (`import`), and optionally trayer (a tray host) and pngquant
(`apt-get install xvfb imagemagick trayer pngquant`). Everything the app writes goes to a
temporary folder (LAMA_* variables); a real `lama-agent` subprocess is started on 127.0.0.1
and paired through the Add node dialog.

The app runs its own `lama_desktop.app.main()`; a driver coroutine on the app's event loop
plays the user: it paints a mask with real mouse events, pairs the agent, drops a folder of
photos on the batch dialog, and calls `import -window root` at each step.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "resources" / "samples"
DISPLAY = ":99"
# (screen in pixels, QT_SCALE_FACTOR, file name suffix)
SESSIONS = (((1366, 768), 1, ""), ((1600, 1000), 2, "-200"))
MAX_BYTES = 300_000
BATCH_COPIES = 60  # 4 samples x 60 = 240 photos: the batch is still running at the screenshot


def _wait_for_display(display: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        probe = subprocess.run(
            ["xdpyinfo", "-display", display], capture_output=True, check=False
        ) if shutil.which("xdpyinfo") else subprocess.run(
            ["import", "-display", display, "-window", "root", "-resize", "1x1", "null:"],
            capture_output=True, check=False,
        )  # fmt: skip
        if probe.returncode == 0:
            return
        time.sleep(0.2)
    raise SystemExit(f"Xvfb on {display} did not come up")


def _start_agent(root: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    """A real lama-agent on 127.0.0.1 with one worker; returns it and its pairing link."""
    agent = subprocess.Popen(
        [str(Path(sys.executable).with_name("lama-agent")), "--data-dir", str(root / "agent"),
         "--bind", "tcp://127.0.0.1:0", "--workers", "1", "--device", "cpu",
         "--name", "studio-pc", "--no-announce"],
        stdout=subprocess.PIPE, stderr=(root / "agent.log").open("w"), text=True, env=env,
    )  # fmt: skip
    assert agent.stdout is not None
    for line in agent.stdout:
        if line.startswith("lama://"):
            return agent, line.strip()
    raise SystemExit(f"lama-agent printed no pairing link; see {root / 'agent.log'}")


def _batch_folder(root: Path) -> Path:
    """Copies of the sample photos, with their masks in a sibling folder the dialog finds."""
    photos, masks = root / "holiday", root / "holiday_masks"
    photos.mkdir()
    masks.mkdir()
    for i in range(BATCH_COPIES):
        for image in sorted((SAMPLES / "images").iterdir()):
            stem = f"{image.stem}-{i:02d}"
            shutil.copy(image, photos / f"{stem}{image.suffix}")
            shutil.copy(SAMPLES / "masks" / f"{image.stem}.png", masks / f"{stem}.png")
    # A download cut short, first in name order so it has failed by the Queue screenshot.
    (photos / "0-cut-short.jpg").write_bytes((SAMPLES / "images" / "rocket.jpg").read_bytes()[:900])
    shutil.copy(SAMPLES / "masks" / "rocket.png", masks / "0-cut-short.png")
    return photos


def _shrink(path: Path) -> None:
    """Keep a screenshot small: pngquant when present, then fewer colours past MAX_BYTES."""
    if shutil.which("pngquant"):
        subprocess.run(
            ["pngquant", "--force", "--skip-if-larger", "--speed", "1", "--quality", "40-90",
             "--output", str(path), str(path)],
            check=False,
        )  # fmt: skip
    if path.stat().st_size > MAX_BYTES:
        subprocess.run(["convert", str(path), "-colors", "64", str(path)], check=True)


def _session(root: Path, out: Path, screen: tuple[int, int], scale: int, suffix: str) -> None:
    """One app run on its own Xvfb screen; the driver takes the shots into `out`."""
    root.mkdir(parents=True)
    env = dict(os.environ, DISPLAY=DISPLAY, LAMA_MODEL="opencv-ns", LAMA_DEVICE="cpu",
               LAMA_LOCAL_WORKERS="1", LAMA_RUN_MODE="manual", QT_QPA_PLATFORM="xcb",
               QT_SCALE_FACTOR=str(scale))  # fmt: skip
    env.pop("WAYLAND_DISPLAY", None)
    for name in ("DATA", "CONFIG", "LOG", "MODELS"):
        env[f"LAMA_{name}_DIR"] = str(root / name.lower())
    width, height = screen
    children: list[subprocess.Popen[str]] = []
    try:
        xvfb = subprocess.Popen(
            ["Xvfb", DISPLAY, "-screen", "0", f"{width}x{height}x24", "-nolisten", "tcp"],
            stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        children.append(xvfb)
        _wait_for_display(DISPLAY)
        if shutil.which("trayer"):  # a tray host, so the app shows its tray icon
            children.append(
                subprocess.Popen(
                    ["trayer", "--edge", "bottom", "--align", "right", "--widthtype", "request",
                     "--height", str(24 * scale), "--transparent", "false",
                     "--tint", "0x333333"],
                    env=env, stderr=subprocess.DEVNULL, text=True,
                )
            )  # fmt: skip
        agent, link = _start_agent(root, env)
        children.append(agent)
        photo = SAMPLES / "images" / "rocket.jpg"
        batch = _batch_folder(root)
        drive = subprocess.run(
            [sys.executable, str(REPO / "scripts" / "screenshot_driver.py"), str(photo),
             "--link", link, "--batch", str(batch), "--out", str(out),
             "--agent-pid", str(agent.pid), "--suffix", suffix,
             "--tray-height", str(24 * scale)],
            env=env, cwd=REPO, check=False, timeout=600,
        )  # fmt: skip
        if drive.returncode != 0:
            raise SystemExit(f"the app driver failed ({drive.returncode}); logs in {root}")
    finally:
        for child in reversed(children):
            child.terminate()
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    for tool in ("Xvfb", "import"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is missing: apt-get install xvfb imagemagick")
    args.out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="lama-shots-"))
    try:
        for screen, scale, suffix in SESSIONS:
            _session(root / f"{screen[0]}x{screen[1]}", args.out, screen, scale, suffix)
        for shot in sorted(args.out.glob("*.png")):
            _shrink(shot)
            print(f"{shot} {shot.stat().st_size // 1024} kB")
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
