"""The address of an HTTP node: URL, bearer token and requests at once (no I/O, no aiohttp)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit, urlunsplit

HTTP_SCHEMES = ("http://", "https://")


def is_http_address(address: str) -> bool:
    return address.lower().startswith(HTTP_SCHEMES)


@dataclass(frozen=True)
class HttpNodeSpec:
    """`http(s)://[TOKEN@]HOST:PORT[/path][?slots=N]`: where, the bearer token, how many at once."""

    url: str
    token: str = ""
    slots: int = 1

    @classmethod
    def parse(cls, spec: str) -> HttpNodeSpec:
        parts = urlsplit(spec.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{spec!r} is not an http(s)://HOST:PORT address")
        query = parse_qs(parts.query)
        slots_text = query.get("slots", ["1"])[-1]
        if not slots_text.isdigit() or not 1 <= int(slots_text) <= 64:
            raise ValueError(f"slots={slots_text!r}: a number of requests at once, 1 to 64")
        netloc = parts.netloc.rsplit("@", 1)[-1]
        url = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        return cls(url, parts.password or parts.username or "", int(slots_text))

    @property
    def address(self) -> str:
        """The form kept in the journal and shown in the Nodes panel (never the token)."""
        return self.url if self.slots == 1 else f"{self.url}?slots={self.slots}"
