"""`lama-agent`: run a headless node, print pairing links, list and revoke paired desktops.

Exit codes: 0 done, 1 a runtime problem (port in use, no running agent), 2 bad usage.
`lama-agent pair` talks to the running agent through its data folder: it reads the address the
agent wrote to `agent.json` and drops a one-time code file into `pairing-codes/`, which the
agent's ZAP handler reads on every handshake.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lama_desktop.cluster.agent import Agent
from lama_desktop.cluster.discovery import advertised_host
from lama_desktop.cluster.keys import AuthorizedKeys, PairingCodes, PairingLink, write_private
from lama_desktop.cluster.pool import WorkerPool
from lama_desktop.cluster.stop_signals import on_stop_signals

log = logging.getLogger("lama_desktop.agent")

STATE_FILE = "agent.json"


def default_data_dir() -> Path:
    """$LAMA_DATA_DIR/agent, else the platform's data folder + /agent."""
    from lama_desktop.config import app_dirs

    return app_dirs().data / "agent"


def _workers(text: str) -> int | str:
    if text == "auto":
        return text
    if text.isdigit():
        return int(text)
    raise argparse.ArgumentTypeError(f"--workers must be 'auto' or a number, not {text!r}")


def _device(text: str) -> str:
    if text in ("auto", "cpu", "cuda") or (text.startswith("cuda:") and text[5:].isdigit()):
        return text
    raise argparse.ArgumentTypeError(f"--device must be auto, cpu, cuda or cuda:N, not {text!r}")


def _bind(text: str) -> str:
    if not text.startswith("tcp://") or ":" not in text[6:]:
        raise argparse.ArgumentTypeError(
            f"--bind must look like tcp://HOST:PORT (e.g. tcp://0.0.0.0:7890), not {text!r}"
        )
    return text


def _metrics_address(text: str) -> tuple[str, int]:
    from lama_desktop.cluster.serving import parse_address

    try:
        return parse_address(text, 9464)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--metrics: {exc}") from None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (subcommands: run (default), pair, keys)."""
    parser = argparse.ArgumentParser(
        prog="lama-agent", description="Lend this machine to Lama Desktop as a worker node."
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="keys, codes and logs")
    parser.add_argument("--bind", type=_bind, default="tcp://0.0.0.0:7890")
    parser.add_argument("--workers", type=_workers, default="auto", help="auto or a number")
    parser.add_argument("--device", type=_device, default="auto", help="auto, cpu, cuda:N")
    parser.add_argument("--name", default=None, help="name shown in the desktop's Nodes panel")
    parser.add_argument("--no-announce", action="store_true", help="do not announce on the LAN")
    parser.add_argument(
        "--ray",
        metavar="auto|ADDRESS",
        default=None,
        help="run jobs on Ray actors of an existing Ray cluster (auto: RAY_ADDRESS or the local "
        "one); --workers then caps the actors, --device cpu keeps them off GPUs",
    )
    parser.add_argument(
        "--ray-cpus-per-actor", type=float, default=None, metavar="N",
        help="CPUs per actor on a cluster without GPUs (default 4, for LaMa; 1 suits OpenCV)",
    )  # fmt: skip
    parser.add_argument(
        "--metrics", type=_metrics_address, default=None, metavar="ADDRESS",
        help="serve Prometheus /metrics on [HOST:]PORT (default host 127.0.0.1; off if not given)",
    )  # fmt: skip
    parser.add_argument("--verbose", "-v", action="store_true")
    # --data-dir is accepted after a subcommand too (`lama-agent pair --data-dir DIR`).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", help="run the agent (the default)", parents=[common])
    sub.add_parser(
        "pair", help="print a fresh pairing link for the running agent", parents=[common]
    )
    keys = sub.add_parser("keys", help="paired desktops")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    keys_sub.add_parser("list", help="list paired desktops", parents=[common])
    revoke = keys_sub.add_parser("revoke", help="unpair a desktop", parents=[common])
    revoke.add_argument("key_or_name")
    return parser


def _setup_logging(verbose: bool) -> None:
    # One line per event, no colours: journald and `tail -f agent.log` read the same.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger("lama_desktop")
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)


def _on_signals(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
    """Call `callback` in the loop on SIGTERM and Ctrl-C (Ctrl-Break too on Windows)."""
    on_stop_signals(loop, callback)


def _pool(args: argparse.Namespace) -> WorkerPool | None:
    """The Ray pool for --ray, else None (the agent's own worker processes)."""
    if args.ray is None:
        return None
    from lama_desktop.cluster.protocol import MAX_MESSAGE_BYTES
    from lama_desktop.cluster.ray_plan import DEFAULT_CPUS_PER_ACTOR, ActorPlan
    from lama_desktop.cluster.ray_pool import RayPool

    cap = None if args.workers == "auto" else int(args.workers)
    cpus = args.ray_cpus_per_actor or DEFAULT_CPUS_PER_ACTOR
    plan = ActorPlan("cpu" if args.device == "cpu" else "auto", cpus, cap)
    return RayPool(args.ray, plan, max_message_bytes=MAX_MESSAGE_BYTES)


async def _run(args: argparse.Namespace, data_dir: Path) -> int:
    agent = Agent(
        args.bind,
        data_dir=data_dir,
        workers=args.workers,
        device=args.device,
        name=args.name,
        announce=not args.no_announce,
        pool=_pool(args),
    )
    try:
        await agent.start()
    except ValueError as exc:  # e.g. --device cuda on a machine without a GPU
        print(f"lama-agent: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # port in use, address not on this machine
        print(f"lama-agent: {exc}", file=sys.stderr)
        return 1
    metrics = None
    if args.metrics is not None:
        try:
            metrics = await _serve_metrics(agent, *args.metrics)
        except OSError as exc:
            await agent.stop(drain=False)
            print(f"lama-agent: --metrics {args.metrics[0]}:{args.metrics[1]}: {exc}",
                  file=sys.stderr)  # fmt: skip
            return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    _on_signals(loop, stop.set)
    link = agent.pairing_link()
    state = {"endpoint": agent.endpoint, "host": link.host, "port": agent.port, "pid": os.getpid()}
    write_private(data_dir / STATE_FILE, json.dumps(state).encode())
    print(f"lama-agent {agent.name} listening on {agent.endpoint}", flush=True)
    print(f"Pair a desktop with this link (single use, 10 minutes):\n{link.format()}", flush=True)
    await stop.wait()
    log.info("stopping: finishing running jobs first (signal again to stop them now)")
    _on_signals(loop, agent.hurry)
    await agent.stop(drain=True)
    if metrics is not None:
        await metrics.stop()
    (data_dir / STATE_FILE).unlink(missing_ok=True)
    return 0


async def _serve_metrics(agent: Agent, host: str, port: int) -> Any:
    """Prometheus /metrics for this agent, read from it at every scrape."""
    from lama_desktop.cluster.metrics import AgentMetrics
    from lama_desktop.cluster.serving import HttpSite, metrics_app

    site = HttpSite(metrics_app(AgentMetrics(agent).registry))
    await site.start(host, port)
    print(f"Prometheus metrics on {site.url}/metrics", flush=True)
    return site


def _pair(data_dir: Path) -> int:
    try:
        state = json.loads((data_dir / STATE_FILE).read_text(encoding="utf-8"))
        pid, port, host = int(state["pid"]), int(state["port"]), str(state["host"])
    except (OSError, ValueError, KeyError):
        print(f"lama-agent: no running agent found in {data_dir}; start lama-agent first.",
              file=sys.stderr)  # fmt: skip
        return 1
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        print(f"lama-agent: the agent (pid {pid}) is not running; start it first.",
              file=sys.stderr)  # fmt: skip
        return 1
    except PermissionError:
        pass  # alive, run by someone else
    from lama_desktop.cluster.keys import load_or_create_keypair

    key = load_or_create_keypair(data_dir / "agent.key").public.decode()
    code = PairingCodes(data_dir / "pairing-codes").issue()
    print(PairingLink(advertised_host(host), port, key, code).format())
    return 0


def _keys(args: argparse.Namespace, data_dir: Path) -> int:
    keys = AuthorizedKeys(data_dir / "authorized_keys")
    if args.keys_command == "list":
        entries = keys.list()
        if not entries:
            print("No paired desktops.")
        for entry in entries:
            print(f"{entry.key}  {entry.name}  (paired {entry.added})")
        return 0
    gone = keys.revoke(args.key_or_name)
    if not gone:
        print(f"lama-agent: no paired desktop has the key or name {args.key_or_name!r}.",
              file=sys.stderr)  # fmt: skip
        return 1
    for entry in gone:
        print(f"Revoked {entry.name} ({entry.key}).")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of `lama-agent`."""
    args = build_parser().parse_args(argv)
    data_dir = (args.data_dir or default_data_dir()).expanduser()
    try:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        print(f"lama-agent: cannot use data folder {data_dir}: {exc}", file=sys.stderr)
        return 1
    if args.command == "pair":
        return _pair(data_dir)
    if args.command == "keys":
        return _keys(args, data_dir)
    _setup_logging(args.verbose)
    try:
        return asyncio.run(_run(args, data_dir))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
