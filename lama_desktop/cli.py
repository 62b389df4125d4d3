"""`lama-desktop`: the window by default (or with a photo), or `batch`, `models`, `serve`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lama_desktop import __version__

_COMMANDS = ("batch", "models", "serve")


def build_parser() -> argparse.ArgumentParser:
    """The full command line: the window, `batch` and `models`."""
    from lama_desktop import batch_cli, models_cli, serve_cli

    parser = argparse.ArgumentParser(
        prog="lama-desktop",
        description="Erase unwanted objects from photos with LaMa inpainting. "
        "With no command, opens the window (and PHOTO, if given).",
        epilog="Run `lama-desktop COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"lama-desktop {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    batch_cli.add_parser(commands)
    models_cli.add_parser(commands)
    serve_cli.add_parser(commands)
    return parser


def _wants_window(argv: list[str]) -> bool:
    """No arguments, or a single photo: an existing path or a file name with an extension.

    A bare word that is neither (`lama-desktop bacth`) is a mistyped command, which the
    parser answers with the list of commands instead of a window that cannot open it.
    """
    if not argv:
        return True
    if len(argv) != 1 or argv[0] in _COMMANDS or argv[0].startswith("-"):
        return False
    return Path(argv[0]).exists() or bool(Path(argv[0]).suffix)


def _start_window(photo: str | None) -> int:
    try:
        # Imported only here: the window pulls in Qt, which batch and models never need.
        from lama_desktop.app import main as gui_main
    except ImportError as exc:
        print(
            f"lama-desktop: the desktop window is not available ({exc}). "
            "The `batch` and `models` commands work without it.",
            file=sys.stderr,
        )
        return 1
    result: int = gui_main(photo)
    return result


def main(argv: list[str] | None = None) -> int:
    """Entry point of `lama-desktop`; returns the exit code (2 for usage errors)."""
    args_list = sys.argv[1:] if argv is None else list(argv)
    if _wants_window(args_list):
        return _start_window(args_list[0] if args_list else None)
    parser = build_parser()
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exc:  # argparse exits 2 on bad usage and 0 after --help
        return exc.code if isinstance(exc.code, int) else 2
    if args.command == "batch":
        from lama_desktop import batch_cli

        return batch_cli.run(args)
    if args.command == "models":
        from lama_desktop import models_cli

        return models_cli.run(args)
    if args.command == "serve":
        from lama_desktop import serve_cli

        return serve_cli.run(args)
    parser.print_usage(sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
