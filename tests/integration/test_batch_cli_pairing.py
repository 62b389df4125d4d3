"""`lama-desktop batch --pair LINK` with a link that cannot pair (issue 7 section 5): one line
on stderr saying why, exit 2, no traceback -- for a used code and for a malformed link."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lama_desktop import cli
from tests.integration.cluster_support import PLUGIN_ENV, REPO, AgentProcess, make_folder

pytestmark = pytest.mark.integration


def batch(args: list[str], data_dir: Path) -> subprocess.CompletedProcess[str]:
    """The real command in its own process, so stderr is exactly what a terminal shows."""
    env = dict(os.environ, LAMA_DATA_DIR=str(data_dir), **PLUGIN_ENV)
    return subprocess.run(
        [sys.executable, "-m", "lama_desktop", "batch", *args], env=env, cwd=REPO,
        capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip


def test_a_used_pairing_link_is_one_line_and_exit_2(tmp_path: Path) -> None:
    images, masks = make_folder(tmp_path, 1)
    agent = AgentProcess(tmp_path / "agent", "attic")
    common = [str(images), "--masks", str(masks), "--model", "opencv-telea", "--local-workers", "0"]
    try:
        # This desktop uses the code up...
        assert (
            cli.main(["batch", *common, "--out", str(tmp_path / "o1"), "--pair", agent.link]) == 0
        )
        # ...so another desktop (its own data folder and key) is refused.
        used = batch(
            [*common, "--out", str(tmp_path / "o2"), "--pair", agent.link], tmp_path / "d2"
        )
    finally:
        agent.close()
    assert used.returncode == 2, used.stderr[-2000:]
    lines = used.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in used.stderr, used.stderr[-2000:]
    assert "already used or has expired" in lines[0] and "lama-agent pair" in lines[0]


def test_a_malformed_link_is_refused_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images, masks = make_folder(tmp_path, 1)
    code = cli.main(
        ["batch", str(images), "--masks", str(masks), "--out", str(tmp_path / "o"),
         "--model", "opencv-telea", "--local-workers", "0",
         "--pair", "lama://127.0.0.1:9/?code=ABCDEFGH"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Pairing link" in err and "key=" in err
