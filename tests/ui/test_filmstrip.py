"""The filmstrip on its own: the folder of the photo asked for last wins a slow listing, and the
strip gives up height on a short window."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from lama_desktop.ui.editor import filmstrip as filmstrip_module
from lama_desktop.ui.editor.filmstrip import Filmstrip
from tests.ui.conftest import LoopRunner, write_photo

pytestmark = [
    pytest.mark.gui,
    pytest.mark.qt_log_ignore("does not support propagateSizeHints"),
]


def test_a_slow_listing_of_an_earlier_folder_does_not_replace_the_later_one(
    qtbot: Any, qloop: LoopRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow, quick = tmp_path / "slow", tmp_path / "quick"
    slow.mkdir()
    quick.mkdir()
    first, later = slow / "a.png", quick / "b.png"
    write_photo(first, 32, 24)
    write_photo(later, 32, 24)
    release = threading.Event()
    listing = filmstrip_module.folder_photos

    def folder_photos(folder: Path) -> list[Path]:
        if folder == slow:
            release.wait(5)  # a big folder on a slow disk
        return listing(folder)

    monkeypatch.setattr(filmstrip_module, "folder_photos", folder_photos)
    strip = Filmstrip()
    qtbot.addWidget(strip)

    async def scenario() -> None:
        import asyncio

        earlier = asyncio.ensure_future(strip.show_photo(first))
        await asyncio.sleep(0.05)  # its folder is being listed
        await strip.show_photo(later)
        release.set()
        await earlier
        assert strip.current == later
        assert strip.photos() == [later]

    qloop.run(scenario())
