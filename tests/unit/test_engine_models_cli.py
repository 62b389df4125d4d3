"""`lama-desktop models list|download|path` through its own argparse wiring."""

from __future__ import annotations

import argparse
import functools
import hashlib
import http.server
import io
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from lama_desktop import models_cli


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="lama-desktop")
    sub = parser.add_subparsers(dest="command", required=True)
    models_cli.add_parser(sub)
    args = parser.parse_args(list(argv))
    assert args.command == "models"
    return models_cli.run(args)


@pytest.fixture
def served_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    folder = tmp_path / "www"
    folder.mkdir()
    body = bytes(range(251)) * 3000
    (folder / "big-lama.pt").write_bytes(body)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    monkeypatch.setenv("LAMA_MODEL_MD5", hashlib.md5(body).hexdigest())
    yield f"http://127.0.0.1:{httpd.server_address[1]}/big-lama.pt"
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def test_list_shows_builtins_and_missing_lama(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run("models", "list", "--models-dir", str(tmp_path)) == 0
    out = capsys.readouterr().out
    assert str(tmp_path) in out
    assert "opencv-ns" in out and "built in" in out
    assert "missing" in out and "models download lama" in out


def test_path_prints_the_file_location(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAMA_MODELS_DIR", str(tmp_path / "env"))
    assert _run("models", "path", "lama") == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "env" / "big-lama.pt")
    # The flag wins over the variable, before or after the action.
    assert _run("models", "--models-dir", str(tmp_path / "flag"), "path", "lama") == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "flag" / "big-lama.pt")


def test_download_then_list_shows_present(
    tmp_path: Path, served_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _run("models", "download", "lama", "--url", served_file, "--models-dir", str(tmp_path))
    assert code == 0
    captured = capsys.readouterr()
    assert "100 %" in captured.err  # plain progress lines when not on a terminal
    assert (tmp_path / "big-lama.pt").stat().st_size == 251 * 3000
    _run("models", "list", "--models-dir", str(tmp_path))
    assert "present" in capsys.readouterr().out


def test_offline_download_exits_1_with_one_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "http://127.0.0.1:9/big-lama.pt"
    assert _run("models", "download", "lama", "--url", url, "--models-dir", str(tmp_path)) == 1
    err = capsys.readouterr().err
    assert url in err and "big-lama.pt" in err and str(tmp_path) in err
    assert "Traceback" not in err


def test_from_file_installs_a_copy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "mine.pt"
    with zipfile.ZipFile(src, "w") as archive:
        archive.writestr("a/data.pkl", b"x")
    store = tmp_path / "store"
    assert (
        _run("models", "download", "lama", "--from-file", str(src), "--models-dir", str(store)) == 0
    )
    assert (store / "big-lama.pt").read_bytes() == src.read_bytes()
    assert "md5 differs" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("models", "download", "sdxl"), "Unknown model"),
        (("models", "download", "opencv-ns"), "built in"),
        (("models", "path", "cv2"), "built in"),
        (("models", "download", "lama", "--url", "http://x/y", "--from-file", "z"), "not both"),
    ],
)
def test_usage_errors_exit_2(
    argv: tuple[str, ...], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(*argv, "--models-dir", str(tmp_path)) == 2
    assert message in capsys.readouterr().err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal() -> None:
    stream = _Terminal()
    report, finish = models_cli._progress_reporter(stream)
    for done in (0, 2**20, 3 * 2**20):
        report(done, 3 * 2**20)
    finish()
    text = stream.getvalue()
    assert "100%" in text and "3.00M" in text
