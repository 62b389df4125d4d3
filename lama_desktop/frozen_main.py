"""Entry point of the bundled executables: the window and CLI, the agent, or a worker.

One runtime serves all three: `lama-desktop` and `lama-agent` are the same program under two
names, and a worker is the running executable started again with `--lama-worker` (a frozen
app has no `python -m`). Nothing heavy is imported here, so the window's cold start is unchanged.
"""

from __future__ import annotations

import sys
from pathlib import Path

WORKER_FLAG = "--lama-worker"  # the same as cluster.worker_link.WORKER_FLAG (kept light here)


def main(argv: list[str] | None = None) -> int:
    """Run what this executable's name and first argument ask for; returns the exit code."""
    args = sys.argv if argv is None else argv
    if len(args) > 1 and args[1] == WORKER_FLAG:
        from lama_desktop.cluster import worker

        return worker.main(args[2:])
    # The name as started, Windows separators included (lama-agent.exe, Lama/lama-agent).
    if Path(args[0].replace("\\", "/")).stem.lower().startswith("lama-agent"):
        from lama_desktop.cluster import agent_cli

        return agent_cli.main(args[1:])
    from lama_desktop import cli

    return cli.main(args[1:])
