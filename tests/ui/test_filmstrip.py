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


def test_the_strip_shrinks_on_a_short_editor_and_has_full_previews_on_a_tall_one(
    qtbot: Any, settings: Any, app_env: Any
) -> None:
    from lama_desktop.ui.editor import EditorWidget
    from tests.ui.test_editor_flow import Painter

    editor = EditorWidget(Painter(), settings, app_env.models)
    qtbot.addWidget(editor)
    editor.resize(800, 450)  # an 800 x 500 window at 200 %, less its menu and status bars
    editor.show()
    # At most a sixth of the height, but previews no smaller than MIN_THUMB_SIDE (80 < 112).
    qtbot.waitUntil(lambda: editor.filmstrip.height() <= 450 // 6 + 5)
    assert editor.filmstrip.iconSize().height() >= filmstrip_module.MIN_THUMB_SIDE
    editor.resize(1280, 900)
    qtbot.waitUntil(lambda: editor.filmstrip.iconSize().height() == filmstrip_module.THUMB_SIDE)
