"""`lama-desktop` dispatch: the window by default, `batch` and `models` headless, usage errors."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lama_desktop import __version__
from lama_desktop.cli import main


@pytest.fixture
def fake_app(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """Stand in for the Qt app module and record what it was asked to open."""
    opened: list[str | None] = []

    def gui_main(photo: str | None = None) -> int:
        opened.append(photo)
        return 0

    module = types.ModuleType("lama_desktop.app")
    module.main = gui_main  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "lama_desktop.app", module)
    return opened


def test_no_arguments_start_the_window(fake_app: list[str | None]) -> None:
    assert main([]) == 0
    assert fake_app == [None]


def test_one_photo_opens_it_in_the_window(fake_app: list[str | None]) -> None:
    assert main(["holiday photo.jpg"]) == 0
    assert fake_app == ["holiday photo.jpg"]


def test_a_mistyped_command_is_a_usage_error_not_a_window(
    fake_app: list[str | None], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bacth"]) == 2
    assert fake_app == [] and "invalid choice" in capsys.readouterr().err


def test_window_unavailable_is_explained(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "lama_desktop.app", None)
    assert main([]) == 1
    assert "batch" in capsys.readouterr().err


def test_version_and_help(capsys: pytest.CaptureFixture[str], fake_app: list[str | None]) -> None:
    assert main(["--version"]) == 0
    assert __version__ in capsys.readouterr().out
    assert main(["--help"]) == 0
    shown = capsys.readouterr().out
    assert "batch" in shown and "models" in shown
    assert main(["batch", "--help"]) == 0
    shown = capsys.readouterr().out
    for option in (
        "--masks",
        "--out",
        "--model",
        "--device",
        "--hd-strategy",
        "--recursive",
        "--overwrite",
        "--format",
        "--json",
        "--resize-mask",
        "--max-pixels",
    ):
        assert option in shown  # fmt: skip
    assert fake_app == []


@pytest.mark.parametrize(
    "argv", [["frobnicate", "x"], ["batch"], ["models"], ["--no-such-flag"], ["batch", "a", "b"]]
)
def test_usage_errors_exit_2(argv: list[str], fake_app: list[str | None]) -> None:
    assert main(argv) == 2
    assert fake_app == []


def test_models_command_is_delegated(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "list"]) == 0
    shown = capsys.readouterr().out
    assert "lama" in shown and "opencv-ns" in shown


def test_module_entry_point_runs_a_light_batch(tmp_path: Path) -> None:
    """`python -m lama_desktop batch` with OpenCV loads neither torch nor Qt."""
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(tmp_path / "p.png")
    mask = np.zeros((16, 16), np.uint8)
    mask[4:8, 4:8] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    code = (
        "import sys; from lama_desktop.cli import main;"
        f"rc = main(['batch', {str(tmp_path / 'p.png')!r}, '--masks', {str(tmp_path / 'm.png')!r},"
        f" '--out', {str(tmp_path / 'out')!r}]);"
        "print('heavy:', [m for m in ('torch', 'PySide6') if m in sys.modules]); sys.exit(rc)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "heavy: []" in done.stdout
    assert (tmp_path / "out" / "p.png").is_file()
    as_module = subprocess.run(
        [sys.executable, "-m", "lama_desktop", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert as_module.returncode == 0
    assert __version__ in as_module.stdout
