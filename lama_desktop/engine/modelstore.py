"""Where model files live, and their download with resume, checksum and atomic rename."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import shutil
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from lama_desktop.engine.base import EngineError

log = logging.getLogger(__name__)

Progress = Callable[[int, int | None], None]
_CHUNK = 1 << 20
_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class ModelFile:
    """One downloadable model file: its store name, file name, source URL and md5."""

    name: str
    filename: str
    url: str
    md5: str


KNOWN_FILES: dict[str, ModelFile] = {
    "lama": ModelFile(
        name="lama",
        filename="big-lama.pt",
        url="https://github.com/Sanster/models/releases/download/add_big_lama/big-lama.pt",
        md5="e3aa4aaa15225a33ec84f9f4bc47e500",
    ),
}

# IOPaint reads the same variables, so one setting points both tools at a mirror.
_ENV_OVERRIDES = {"lama": ("LAMA_MODEL_URL", "LAMA_MODEL_MD5")}


class DownloadError(EngineError):
    """A model file could not be fetched or failed its checksum."""


def default_models_dir() -> Path:
    """$LAMA_MODELS_DIR, else the data folder ($LAMA_DATA_DIR or the platform's) + /models.

    The app, the batch command and every worker call this one function, so a model the app
    downloads is the one its workers load.
    """
    override = os.environ.get("LAMA_MODELS_DIR")
    if override:
        return Path(override).expanduser()
    data = os.environ.get("LAMA_DATA_DIR")
    if data:
        return Path(data).expanduser() / "models"
    import platformdirs  # only when no folder is given: keeps a worker's import light

    return Path(platformdirs.user_data_dir("lama-desktop", appauthor=False)) / "models"


def md5_of(path: Path) -> str:
    """Hex md5 of a file, read in chunks."""
    digest = hashlib.md5()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class ModelStore:
    """A folder of model files, one per known model name."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_models_dir()

    def file(self, name: str) -> ModelFile:
        """The file description for `name`, with LAMA_MODEL_URL / LAMA_MODEL_MD5 applied."""
        try:
            spec = KNOWN_FILES[name]
        except KeyError:
            known = ", ".join(sorted(KNOWN_FILES))
            raise EngineError(
                f"No model file is known by the name {name!r}. Known: {known}."
            ) from None
        url_var, md5_var = _ENV_OVERRIDES.get(name, ("", ""))
        url = (os.environ.get(url_var) if url_var else None) or spec.url
        md5 = (os.environ.get(md5_var) if md5_var else None) or spec.md5
        return replace(spec, url=url, md5=md5.lower())

    def path(self, name: str) -> Path:
        """Where the file for model `name` lives (whether or not it is there yet)."""
        return self.root / self.file(name).filename

    def is_present(self, name: str) -> bool:
        """True when the file for `name` exists and is not empty."""
        path = self.path(name)
        return path.is_file() and path.stat().st_size > 0

    def matches_checksum(self, name: str, path: Path | None = None) -> bool:
        """True when `path` (default: the stored file) has the expected md5."""
        return md5_of(path or self.path(name)) == self.file(name).md5

    def download(self, name: str, progress: Progress | None = None, url: str | None = None) -> Path:
        """Fetch the file for `name` (resuming a partial download), check its md5, install it."""
        spec = self.file(name)
        source = url or spec.url
        target = self.path(name)
        part = target.with_name(target.name + ".part")
        self.root.mkdir(parents=True, exist_ok=True)
        # One download per file at a time (the editor's banner, the Queue panel and a
        # `models download` may ask at once): a second one waits, then finds the file there.
        with _exclusive(target.with_name(target.name + ".lock")) as waited:
            if waited and self.is_present(name) and self.matches_checksum(name):
                log.info("%s was downloaded meanwhile by another download", spec.filename)
                return target
            return self._download_locked(name, source, part, target, progress)

    def _download_locked(
        self, name: str, source: str, part: Path, target: Path, progress: Progress | None
    ) -> Path:
        spec = self.file(name)
        try:
            self._fetch(source, part, progress)
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise DownloadError(
                f"Could not download {spec.filename} from {source} ({reason}). "
                f"Check the connection and run the command again (a partial download resumes), "
                f"or download {source} yourself and save it as {spec.filename} in the folder "
                f"{self.root} (or install it with `lama-desktop models download {name} "
                f"--from-file PATH`)."
            ) from exc
        actual = md5_of(part)
        if actual != spec.md5:
            part.unlink(missing_ok=True)
            raise DownloadError(
                f"Downloaded {spec.filename} from {source} is corrupt: md5 {actual}, expected "
                f"{spec.md5}. The bad file was removed; run the command again."
            )
        _fsync(part)  # on disk before it gets the final name: a crash never leaves half a model
        os.replace(part, target)
        return target

    def _fetch(self, url: str, part: Path, progress: Progress | None) -> None:
        """Write `url` into `part`, continuing from its current size with a Range request."""
        have = part.stat().st_size if part.exists() else 0
        request = urllib.request.Request(url, headers={"User-Agent": "lama-desktop"})
        if have:
            request.add_header("Range", f"bytes={have}-")
        try:
            response = urllib.request.urlopen(request, timeout=_TIMEOUT_S)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and have:
                # The server has nothing past our partial file: it is complete (the md5 decides).
                return
            raise
        with response:
            if have and response.status != 206:
                have = 0  # server ignored the Range header: start over
            length = response.headers.get("Content-Length")
            total = have + int(length) if length is not None else None
            done = have
            with part.open("ab" if have else "wb") as out:
                if progress:
                    progress(done, total)
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total)
        if total is not None and done < total:
            raise OSError(f"connection closed after {done} of {total} bytes")

    def install_local(self, name: str, src: Path) -> Path:
        """Copy a user-supplied file into the store (the original is left untouched).

        A file that is not a TorchScript archive (a zip) is refused. A file whose md5
        differs from the published one is still installed, with a logged warning: users
        may bring their own fine-tuned or re-exported LaMa, and it is their call.
        """
        src = Path(src).expanduser()
        spec = self.file(name)
        if not src.is_file():
            raise EngineError(f"Model file {src} does not exist or is not a file.")
        if not zipfile.is_zipfile(src):
            raise EngineError(
                f"{src} is not a TorchScript model file (expected a zip archive like "
                f"{spec.filename} from {spec.url})."
            )
        if not self.matches_checksum(name, src):
            log.warning(
                "%s has md5 %s, not the published %s; installing it anyway as %s",
                src,
                md5_of(src),
                spec.md5,
                spec.filename,
            )
        target = self.path(name)
        self.root.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(target.name + ".copying")
        try:
            shutil.copyfile(src, temp)
            _fsync(temp)
            os.replace(temp, target)
        except BaseException:  # disk full, Ctrl-C: no half-copied file stays behind
            temp.unlink(missing_ok=True)
            raise
        return target


@contextlib.contextmanager
def _exclusive(lock: Path) -> Iterator[bool]:
    """Hold an exclusive lock on the file `lock` (made if missing); yields whether it had to
    wait for another holder. POSIX flock, or msvcrt on Windows; freed when the holder dies."""
    with lock.open("a+b") as handle:
        waited = not _try_lock(handle.fileno(), wait=False)
        if waited:
            _try_lock(handle.fileno(), wait=True)
        yield waited  # the lock ends when the file is closed


def _try_lock(fd: int, *, wait: bool) -> bool:
    if sys.platform == "win32":
        import msvcrt

        while True:
            try:
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
                return True
            except OSError:
                if not wait:
                    return False
                time.sleep(0.5)
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    return True


def _fsync(path: Path) -> None:
    with path.open("rb+") as handle:
        os.fsync(handle.fileno())
