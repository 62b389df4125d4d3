"""`serve` without --node never opens the journal: the app's journal is not its business."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from lama_desktop.cluster.serve_run import serve
from lama_desktop.cluster.serving import ServeOptions

pytestmark = pytest.mark.integration


def test_serve_with_local_workers_leaves_a_damaged_journal_alone(tmp_path: Path) -> None:
    # As `batch`: a journal serve has no use for must neither stop it nor be moved aside by
    # it (the app, running at the same time, owns that file and tells the user about it).
    data = tmp_path / "data"
    data.mkdir()
    garbage = bytes(range(256)) * 64
    (data / "journal.sqlite3").write_bytes(garbage)
    urls: list[str] = []

    async def body() -> None:
        stop = asyncio.Event()

        def listening(url: str) -> None:
            urls.append(url)
            stop.set()

        options = ServeOptions(port=0, model="opencv-ns")
        await asyncio.wait_for(
            serve(options, 1, data_dir=data, on_listening=listening, stop=stop), 60
        )

    asyncio.run(body())
    assert urls and urls[0].startswith("http://127.0.0.1:")
    assert sorted(p.name for p in data.iterdir() if p.name.startswith("journal")) == [
        "journal.sqlite3"
    ]
    assert (data / "journal.sqlite3").read_bytes() == garbage
