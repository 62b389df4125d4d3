"""Curve key pairs, the authorised-keys file, one-time pairing codes and the pairing link."""

from __future__ import annotations

import builtins
import hashlib
import os
import re
import secrets
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import zmq
from zmq.utils import z85

PAIRING_TTL_S = 600.0
_CODE_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"  # base32: no 0/1/8/9 to misread
_CODE_RE = re.compile(r"^[A-Z2-7]{8}$")
_Z85_KEY_LEN = 40


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically with mode 0600 (temp file in the same folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def is_z85_key(key: str | bytes) -> bool:
    """True when `key` looks like a z85-encoded 32-byte Curve key."""
    text = key.decode("ascii", "replace") if isinstance(key, bytes) else key
    if len(text) != _Z85_KEY_LEN:
        return False
    try:
        z85.decode(text.encode("ascii"))
    except (ValueError, KeyError, UnicodeEncodeError):
        return False
    return True


@dataclass(frozen=True)
class KeyPair:
    """A Curve key pair, both halves z85-encoded (40 ASCII bytes each)."""

    public: bytes
    secret: bytes


def load_or_create_keypair(path: Path) -> KeyPair:
    """Read the key pair stored at `path`, or make one and store it there (mode 0600)."""
    if path.exists():
        lines = path.read_bytes().split()
        if len(lines) != 2 or not all(is_z85_key(line) for line in lines):
            raise ValueError(
                f"Key file {path} is damaged (expected two z85 keys). Move it away to make a "
                "new key pair; paired desktops will then have to pair again."
            )
        return KeyPair(public=lines[0], secret=lines[1])
    public, secret = zmq.curve_keypair()
    write_private(path, public + b"\n" + secret + b"\n")
    return KeyPair(public=public, secret=secret)


def pairing_keypair(code: str, server_key: str | bytes) -> KeyPair:
    """The one-off Curve key pair a desktop pairs with: derived from the code and the agent's key.

    Only someone who holds the code can complete a Curve handshake with this key, so the agent
    lets no unknown key in except these: a stranger without the code is refused at the
    handshake and never gets to send a message (see docs/protocol.md, Pairing).
    """
    server = server_key.encode("ascii") if isinstance(server_key, str) else server_key
    seed = hashlib.sha256(b"lama-desktop pairing 1\0" + code.strip().upper().encode() + b"\0")
    seed.update(server)
    secret = z85.encode(seed.digest())
    return KeyPair(public=zmq.curve_public(secret), secret=secret)


@dataclass(frozen=True)
class AuthorizedKey:
    """One line of the authorised-keys file."""

    key: str
    name: str
    added: str


class AuthorizedKeys:
    """The desktops allowed in, one `z85key name added-iso-date` line each (like SSH).

    Every read checks the file's mtime, so `lama-agent keys revoke` takes effect in a
    running agent without a restart.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._entries: list[AuthorizedKey] = []
        self._stamp: tuple[int, int] | None = None

    def _reload(self) -> None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._entries, self._stamp = [], None
            return
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._stamp:
            return
        entries = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            parts = line.split(None, 2)
            if not parts or not is_z85_key(parts[0]):  # comments and junk lines
                continue
            rest = parts[2] if len(parts) > 2 else ""
            # Names may contain spaces: the date is the last word.
            name_words = ((parts[1] if len(parts) > 1 else "") + " " + rest).split()
            added = name_words.pop() if len(name_words) > 1 else ""
            entries.append(AuthorizedKey(parts[0], " ".join(name_words), added))
        self._entries, self._stamp = entries, stamp

    def _save(self, entries: list[AuthorizedKey]) -> None:
        text = "".join(f"{e.key} {e.name} {e.added}\n" for e in entries)
        write_private(self.path, text.encode("utf-8"))
        self._stamp = None
        self._reload()

    def list(self) -> list[AuthorizedKey]:
        """Every authorised key, in file order."""
        self._reload()
        return list(self._entries)

    def contains(self, key: str | bytes) -> bool:
        """True when `key` (z85) is authorised."""
        text = key.decode("ascii", "replace") if isinstance(key, bytes) else key
        return any(entry.key == text for entry in self.list())

    def add(self, key: str | bytes, name: str) -> None:
        """Authorise `key` under `name` (a key already present keeps its line)."""
        text = key.decode("ascii") if isinstance(key, bytes) else key
        if not is_z85_key(text):
            raise ValueError(f"{text!r} is not a z85 Curve public key (40 characters).")
        entries = self.list()
        if any(entry.key == text for entry in entries):
            return
        clean = " ".join(name.split()) or "unnamed"
        added = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self._save([*entries, AuthorizedKey(text, clean, added)])

    def revoke(self, key_or_name: str) -> builtins.list[AuthorizedKey]:
        """Remove every line whose key or name equals `key_or_name`; returns what was removed."""
        entries = self.list()
        gone = [e for e in entries if key_or_name in (e.key, e.name)]
        if gone:
            self._save([e for e in entries if e not in gone])
        return gone


class PairingCodes:
    """Single-use pairing codes, one file per code in a private folder.

    A file per code lets `lama-agent pair` (another process) issue codes to the running
    agent, and makes consumption atomic across processes: only one unlink of a file succeeds.
    The file holds the code's expiry as a Unix time.
    """

    def __init__(self, directory: Path, clock: Callable[[], float] = time.time) -> None:
        self.directory = directory
        self._clock = clock

    def issue(self, ttl: float = PAIRING_TTL_S) -> str:
        """Make a fresh code valid for `ttl` seconds and return it."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        code = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(8))
        write_private(self.directory / code, f"{self._clock() + ttl:.3f}\n".encode())
        return code

    def _expiry(self, path: Path) -> float | None:
        try:
            return float(path.read_text(encoding="ascii").strip())
        except (OSError, ValueError):
            return None

    def consume(self, code: str, now: float | None = None) -> bool:
        """Use up `code`: True once if it is live; expired, unknown and reused codes give False."""
        code = code.strip().upper()
        if not _CODE_RE.match(code):
            return False  # never let a peer's text near the file system unless it is a code
        path = self.directory / code
        expiry = self._expiry(path)
        try:
            path.unlink()
        except FileNotFoundError:
            return False  # unknown, or used already (maybe by another process just now)
        now = self._clock() if now is None else now
        return expiry is not None and now < expiry

    def live(self, now: float | None = None) -> list[str]:
        """Codes that can still be used; expired code files are removed on the way."""
        now = self._clock() if now is None else now
        if not self.directory.is_dir():
            return []
        codes = []
        for path in self.directory.iterdir():
            if not _CODE_RE.match(path.name):
                continue
            expiry = self._expiry(path)
            if expiry is not None and now < expiry:
                codes.append(path.name)
            else:
                path.unlink(missing_ok=True)
        return sorted(codes)


@dataclass(frozen=True)
class PairingLink:
    """`lama://HOST:PORT/?key=Z85KEY&code=CODE`: where an agent is, its key and a one-time code."""

    host: str
    port: int
    server_key: str
    code: str = ""

    @classmethod
    def parse(cls, text: str) -> PairingLink:
        """Read a link; raises ValueError saying what is wrong with a bad one."""
        text = text.strip()
        parts = urllib.parse.urlsplit(text)
        if parts.scheme != "lama":
            raise ValueError(f"Pairing link {text!r} must start with lama:// .")
        try:
            host, port = parts.hostname, parts.port
        except ValueError:
            raise ValueError(f"Pairing link {text!r} has a bad port.") from None
        if not host or port is None:
            raise ValueError(f"Pairing link {text!r} needs a host and a port (lama://HOST:PORT/).")
        query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
        key = query.get("key", [""])[0]
        if not is_z85_key(key):
            raise ValueError(
                f"Pairing link {text!r} has no valid key= (a 40-character Curve public key, "
                "percent-encoded); copy the whole link again."
            )
        code = query.get("code", [""])[0].strip().upper()
        if code and not _CODE_RE.match(code):
            raise ValueError(f"Pairing link {text!r} has a bad code= (8 letters and digits).")
        return cls(host=host, port=port, server_key=key, code=code)

    def format(self) -> str:
        """The link as text, the key percent-encoded (z85 uses characters like & and ?)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        query = f"key={urllib.parse.quote(self.server_key, safe='')}"
        if self.code:
            query += f"&code={self.code}"
        return f"lama://{host}:{self.port}/?{query}"

    @property
    def address(self) -> str:
        """The ZeroMQ endpoint to connect to."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{host}:{self.port}"
