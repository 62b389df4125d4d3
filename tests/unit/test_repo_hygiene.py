"""Tracked files carry no leftover merge-conflict markers (one slipped into a README once)."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MARKER = re.compile(rb"^(<{7} |>{7} |={7}$)", re.MULTILINE)


def test_no_conflict_markers_in_tracked_files() -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    assert len(listed) > 50, "git ls-files listed almost nothing"
    found = []
    for name in filter(None, listed):
        path = ROOT / name.decode()
        if not path.is_file() or path.stat().st_size > 2_000_000:
            continue
        for match in MARKER.finditer(path.read_bytes()):
            line = path.read_bytes().count(b"\n", 0, match.start()) + 1
            found.append(f"{name.decode()}:{line}")
    assert not found, "merge-conflict markers left in: " + ", ".join(found)
