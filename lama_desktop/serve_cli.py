"""`lama-desktop serve`: IOPaint's HTTP API in front of this machine's workers and its nodes."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Any

from lama_desktop.engine.base import EngineError, get_spec

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_parser(subparsers: Any) -> None:
    """Add the `serve` command to a CLI's subparsers."""
    p = subparsers.add_parser(
        "serve",
        help="serve IOPaint's HTTP API, headless, on this machine's workers and nodes",
        description=(
            "Answer IOPaint 1.6's HTTP API (/api/v1/inpaint, server-config, model, ...) and\n"
            "Prometheus /metrics. Every request is an interactive job on the cluster, ahead of\n"
            "batches. Listening beyond loopback needs --token (clients send\n"
            "`Authorization: Bearer TOKEN`)."
        ),
        epilog="example: lama-desktop serve --port 8080 --model opencv-ns --local-workers 2",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=8080, help="port (default 8080; 0: any free)")
    p.add_argument("--model", default="auto", help="lama, opencv-ns (IOPaint's cv2), opencv-telea")
    p.add_argument(
        "--token", default=os.environ.get("LAMA_SERVE_TOKEN"),
        help="bearer token clients must send (default: $LAMA_SERVE_TOKEN); needed off loopback",
    )  # fmt: skip
    p.add_argument("--input", type=Path, help="photo that GET /api/v1/inputimage returns")
    p.add_argument("--max-body-mb", type=_port, default=100, help="largest request (default 100)")
    p.add_argument(
        "--local-workers", type=_count, metavar="N",
        help="worker processes on this machine (default: sized to the cores; 0: only the nodes)",
    )  # fmt: skip
    p.add_argument(
        "--node", action="append", default=[], metavar="LINK", help="a node to use (repeatable)"
    )
    p.add_argument("--verbose", "-v", action="store_true")


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0..65535, not {value}")
    return value


def run(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C or SIGTERM; returns the exit code."""
    from lama_desktop.cluster.serve_run import serve
    from lama_desktop.cluster.serving import ServeOptions, check_bind

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        from lama_desktop.cluster.worker import load_plugins

        load_plugins(os.environ.get("LAMA_PLUGINS"))  # their engines are models to serve too
        if args.model != "auto":
            args.model = get_spec(args.model).name
        check_bind(args.host, args.token)
    except (EngineError, ValueError) as exc:
        print(f"lama-desktop serve: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.input is not None and not args.input.is_file():
        print(f"lama-desktop serve: --input {args.input} is not a file", file=sys.stderr)
        return EXIT_USAGE
    options = ServeOptions(
        host=args.host,
        port=args.port,
        model=args.model,
        token=args.token,
        input_image=args.input,
        max_body=args.max_body_mb * 1024 * 1024,
    )

    def listening(url: str) -> None:
        print(f"IOPaint API on {url} (model {options.model}); /metrics for Prometheus", flush=True)

    try:
        asyncio.run(serve(options, args.local_workers, args.node, on_listening=listening))
    except (EngineError, OSError, ValueError) as exc:
        print(f"lama-desktop serve: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        pass
    return EXIT_OK
