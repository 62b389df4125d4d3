"""Model file store: the real download code against a local HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import http.server
import logging
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lama_desktop.engine.base import EngineError
from lama_desktop.engine.modelstore import KNOWN_FILES, DownloadError, ModelStore

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB, several read chunks' worth of distinct bytes


@dataclass
class FileServer:
    """What the server sends, and what it was asked."""

    body: bytes = PAYLOAD
    cut_after: int | None = None  # close the connection after this many bytes of the body
    honour_range: bool = True
    ranges: list[str | None] = field(default_factory=list)
    url: str = ""


def _handler(state: FileServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requested = self.headers.get("Range")
            state.ranges.append(requested)
            start = 0
            if requested and state.honour_range:
                start = int(requested.removeprefix("bytes=").split("-")[0])
                if start >= len(state.body):
                    self.send_response(416)
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(state.body) - 1}/*")
            else:
                self.send_response(200)
            chunk = state.body[start:]
            self.send_header("Content-Length", str(len(chunk)))
            self.end_headers()
            if state.cut_after is not None:
                self.wfile.write(chunk[: state.cut_after])
                state.cut_after = None  # only the first transfer breaks
                self.close_connection = True
                return
            self.wfile.write(chunk)

        def log_message(self, *args: object) -> None:  # keep test output quiet
            return

    return Handler


@pytest.fixture
def server() -> Iterator[FileServer]:
    state = FileServer()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/big-lama.pt"
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: FileServer) -> ModelStore:
    monkeypatch.setenv("LAMA_MODEL_URL", server.url)
    monkeypatch.setenv("LAMA_MODEL_MD5", hashlib.md5(PAYLOAD).hexdigest())
    return ModelStore(tmp_path / "models")


def test_default_root_follows_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAMA_MODELS_DIR", str(tmp_path / "m"))
    assert ModelStore().root == tmp_path / "m"
    assert ModelStore().path("lama") == tmp_path / "m" / "big-lama.pt"


def test_known_lama_file_is_iopaints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LAMA_MODEL_URL", raising=False)
    monkeypatch.delenv("LAMA_MODEL_MD5", raising=False)
    spec = ModelStore(Path("/nonexistent")).file("lama")
    assert spec == KNOWN_FILES["lama"]
    assert spec.md5 == "e3aa4aaa15225a33ec84f9f4bc47e500"
    assert spec.url.endswith("/add_big_lama/big-lama.pt")


def test_unknown_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="Known: lama"):
        ModelStore(tmp_path).path("nope")


def test_good_download(store: ModelStore, server: FileServer) -> None:
    seen: list[tuple[int, int | None]] = []
    path = store.download("lama", progress=lambda done, total: seen.append((done, total)))
    assert path == store.path("lama") and path.read_bytes() == PAYLOAD
    assert store.is_present("lama")
    assert not path.with_name("big-lama.pt.part").exists()
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert server.ranges == [None]


def test_two_downloads_at_once_fetch_the_file_once(store: ModelStore, server: FileServer) -> None:
    """The banner and the Queue panel (or the app and `models download`) ask together: the
    second waits for the first and finds the file there."""
    second: list[Path] = []
    waiting = threading.Thread(target=lambda: second.append(store.download("lama")))

    def progress(done: int, total: int | None) -> None:
        if not waiting.is_alive() and not second:
            waiting.start()
            time.sleep(0.3)  # the second asks while the first is half way

    first = store.download("lama", progress=progress)
    waiting.join(10)
    assert second == [first] and first.read_bytes() == PAYLOAD
    assert server.ranges == [None]  # one request: the second did not fetch again


def test_corrupted_download_is_rejected_and_removed(store: ModelStore, server: FileServer) -> None:
    server.body = PAYLOAD[:-1] + b"\x00"
    with pytest.raises(DownloadError, match="corrupt") as err:
        store.download("lama")
    assert hashlib.md5(PAYLOAD).hexdigest() in str(err.value)
    assert not store.path("lama").exists()
    assert [f.name for f in store.root.iterdir()] == ["big-lama.pt.lock"]  # no partial file


def test_interrupted_download_resumes_with_range(store: ModelStore, server: FileServer) -> None:
    server.cut_after = 300_000
    with pytest.raises(DownloadError, match="resumes"):
        store.download("lama")
    part = store.root / "big-lama.pt.part"
    assert part.stat().st_size == 300_000
    assert not store.is_present("lama")

    path = store.download("lama")
    assert path.read_bytes() == PAYLOAD
    assert server.ranges == [None, "bytes=300000-"]


def test_resume_when_server_ignores_range(store: ModelStore, server: FileServer) -> None:
    server.honour_range = False
    (store.root).mkdir(parents=True)
    (store.root / "big-lama.pt.part").write_bytes(b"stale bytes")
    assert store.download("lama").read_bytes() == PAYLOAD


def test_complete_part_file_is_finished_on_416(store: ModelStore, server: FileServer) -> None:
    store.root.mkdir(parents=True)
    (store.root / "big-lama.pt.part").write_bytes(PAYLOAD)
    assert store.download("lama").read_bytes() == PAYLOAD
    assert server.ranges == [f"bytes={len(PAYLOAD)}-"]


def test_offline_url_gives_one_clear_message(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    url = "http://127.0.0.1:9/big-lama.pt"  # discard port: nothing listens there
    with pytest.raises(DownloadError) as err:
        store.download("lama", url=url)
    message = str(err.value)
    assert url in message and "big-lama.pt" in message and str(tmp_path / "models") in message
    assert not store.is_present("lama")


def _zip_file(path: Path, content: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("model/data.pkl", content)
    return path


def test_install_local_copies_and_keeps_original(
    store: ModelStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    src = _zip_file(tmp_path / "my lama ü.pt", b"weights")
    before = src.read_bytes()
    with caplog.at_level(logging.WARNING):
        target = store.install_local("lama", src)
    assert target == store.path("lama") and target.read_bytes() == before
    assert src.read_bytes() == before
    assert "installing it anyway" in caplog.text  # md5 differs from the published file
    assert not store.matches_checksum("lama")


def test_install_local_refuses_non_torchscript(store: ModelStore, tmp_path: Path) -> None:
    src = tmp_path / "notes.pt"
    src.write_text("not a model")
    with pytest.raises(EngineError, match="not a TorchScript"):
        store.install_local("lama", src)
    assert not store.is_present("lama")
    with pytest.raises(EngineError, match="does not exist"):
        store.install_local("lama", tmp_path / "missing.pt")
