"""`lama-desktop models list|download|path`: see, fetch and locate model files."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from lama_desktop.engine.base import EngineError, get_model_class, model_names
from lama_desktop.engine.modelstore import KNOWN_FILES, ModelStore

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_parser(subparsers: Any) -> None:
    """Add the `models` command (and its list/download/path subcommands) to a CLI."""
    parser = subparsers.add_parser("models", help="list, download or locate model files")
    # Accepted before or after the subcommand; SUPPRESS keeps a later default from erasing it.
    dir_help = "folder of model files (default: $LAMA_MODELS_DIR or the user data folder)"
    parser.add_argument("--models-dir", type=Path, help=dir_help)
    actions = parser.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = actions.add_parser(name, help=help_text)
        sub.add_argument("--models-dir", type=Path, default=argparse.SUPPRESS, help=dir_help)
        return sub

    action("list", "show every model and whether its file is present")
    download = action("download", "download a model file (resumes a partial download)")
    download.add_argument("name", help="model name, e.g. lama")
    download.add_argument("--url", help="download from this address instead (a mirror)")
    download.add_argument(
        "--from-file", type=Path, metavar="PATH", help="install a file you already have"
    )
    where = action("path", "print where a model's file lives")
    where.add_argument("name", help="model name, e.g. lama")


def run(args: argparse.Namespace) -> int:
    """Carry out a parsed `models` command; returns the process exit code."""
    store = ModelStore(getattr(args, "models_dir", None))
    try:
        if args.models_command == "list":
            return _list(store, sys.stdout)
        name = _file_name(args.name)
        if args.models_command == "path":
            print(store.path(name))
            return EXIT_OK
        return _download(store, name, args.url, args.from_file)
    except _UsageError as exc:
        print(f"lama-desktop models: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except EngineError as exc:
        print(f"lama-desktop models: {exc}", file=sys.stderr)
        return EXIT_FAILED


class _UsageError(Exception):
    """A model name or option combination that cannot be acted on."""


def _file_name(name: str) -> str:
    """The model-store name for a model name, or a usage error listing what can be fetched."""
    key = name.strip().lower()
    if key in KNOWN_FILES:
        return key
    try:
        cls = get_model_class(key)
    except EngineError as exc:
        raise _UsageError(str(exc)) from None
    if not cls.needs_download:
        raise _UsageError(f"{cls.name} is built in; it has no file to download.")
    raise _UsageError(f"No download is known for {cls.name}.")


def _list(store: ModelStore, out: TextIO) -> int:
    print(f"Model files folder: {store.root}", file=out)
    for name in model_names():
        cls = get_model_class(name)
        if not cls.needs_download:
            status = "built in"
        elif name in KNOWN_FILES and store.is_present(name):
            path = store.path(name)
            status = f"present  {path} ({path.stat().st_size / 2**20:.0f} MiB)"
        elif name in KNOWN_FILES:
            status = f"missing  (lama-desktop models download {name})"
        else:
            status = "missing"
        print(f"  {name:<14} {cls.title:<22} {status}", file=out)
    return EXIT_OK


def _download(store: ModelStore, name: str, url: str | None, from_file: Path | None) -> int:
    if url and from_file:
        raise _UsageError("use either --url or --from-file, not both")
    if from_file is not None:
        target = store.install_local(name, from_file)
        if not store.matches_checksum(name, target):
            print(
                f"warning: {from_file} is not the published {name} file (md5 differs); "
                "installed anyway",
                file=sys.stderr,
            )
        print(f"Installed {target}")
        return EXIT_OK
    source = url or store.file(name).url
    print(f"Downloading {source}\n  to {store.path(name)}", file=sys.stderr)
    report, finish = _progress_reporter(sys.stderr)
    try:
        target = store.download(name, progress=report, url=url)
    finally:
        finish()
    print(f"Saved {target}")
    return EXIT_OK


def _progress_reporter(
    stream: TextIO,
) -> tuple[Callable[[int, int | None], None], Callable[[], None]]:
    """A progress callback: a tqdm bar on a terminal, a line every 10 % otherwise."""
    if stream.isatty():
        from tqdm import tqdm

        bar = tqdm(total=None, unit="B", unit_scale=True, unit_divisor=1024, file=stream)

        def update_bar(done: int, total: int | None) -> None:
            if total is not None and bar.total != total:
                bar.total = total
            bar.update(done - bar.n)

        return update_bar, bar.close

    last_step = [-1]

    def print_line(done: int, total: int | None) -> None:
        step = done * 10 // total if total else done // (20 * 2**20)
        if step != last_step[0]:
            last_step[0] = step
            size = f"{done / 2**20:.1f} MiB"
            share = f" of {total / 2**20:.1f} MiB ({done * 100 // total} %)" if total else ""
            print(f"  {size}{share}", file=stream, flush=True)

    return print_line, lambda: None
