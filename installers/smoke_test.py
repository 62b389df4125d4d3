"""Smoke test of the built bundle, as a person without Python would run it.

Usage: python3 installers/smoke_test.py dist/lama-desktop-VERSION-linux-x86_64.tar.gz
(or the dist/lama-desktop folder). It unpacks into a temporary folder and runs every command
with a clean environment (only PATH and a temporary HOME: no venv, no PYTHONPATH):
`--version`, a batch of the sample photos, the window under the offscreen platform opening and
quitting on its own (LAMA_STARTUP_REPORT), and `lama-agent` with a batch pairing with it (its
workers on the portable tcp+Curve link). Prints JSON figures; exits non-zero on any failure.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "resources" / "samples"
COLD_START_GOAL_S = 1.5


class SmokeError(Exception):
    """A step of the smoke test failed; the message says which and why."""


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8", **extra}


def run(cmd: list[str], env: dict[str, str], timeout: float, cwd: Path) -> str:
    print("$", " ".join(cmd), flush=True)
    done = subprocess.run(
        cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise SmokeError(
            f"{' '.join(cmd)} exited {done.returncode}\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )
    return done.stdout + done.stderr


def unpack(source: Path, into: Path) -> Path:
    if source.is_dir():
        return Path(shutil.copytree(source, into / source.name, symlinks=True))
    with tarfile.open(source) as archive:
        archive.extractall(into, filter="tar")
    folders = [p for p in into.iterdir() if p.is_dir()]
    if len(folders) != 1:
        raise SmokeError(f"{source} should hold one folder, holds {folders}")
    return folders[0]


def check_outputs(out: Path, what: str) -> int:
    images = sorted(p.stem for p in (SAMPLES / "images").iterdir())
    made = sorted(p.stem for p in out.iterdir()) if out.is_dir() else []
    if made != images:
        raise SmokeError(f"{what}: expected outputs for {images}, found {made}")
    return len(made)


def batch(app: Path, env: dict[str, str], out: Path, *extra: str) -> float:
    started = time.perf_counter()
    images, masks = str(SAMPLES / "images"), str(SAMPLES / "masks")
    cmd = [str(app / "lama-desktop"), "batch", images, "--masks", masks, "--out", str(out)]
    run([*cmd, *extra], env, 300, out.parent)
    check_outputs(out, "batch " + " ".join(extra))
    return time.perf_counter() - started


def install_for_user(app: Path, home: Path) -> str:
    """install.sh registers the folder; the launcher it links on PATH must run the app."""
    if not (app / "install.sh").exists():
        return "no install.sh (a bare folder)"
    run([str(app / "install.sh")], clean_env(home), 60, home)
    entry = home / ".local/share/applications/lama-desktop.desktop"
    if f'Exec="{app}/lama-desktop" %f' not in entry.read_text():
        raise SmokeError(f"{entry} does not start {app}/lama-desktop")
    version = run([str(home / ".local/bin/lama-desktop"), "--version"], clean_env(home), 60, home)
    return f"install.sh: menu entry, icon and {version.strip()} through ~/.local/bin"


def window(app: Path, home: Path, run_index: int) -> dict[str, object]:
    report = home / f"startup-{run_index}.json"
    env = clean_env(home, QT_QPA_PLATFORM="offscreen", LAMA_STARTUP_REPORT=str(report))
    run([str(app / "lama-desktop")], env, 180, home)
    data: dict[str, object] = json.loads(report.read_text())
    if data["torch_imported"] or data["cv2_imported"]:
        raise SmokeError(f"the window process imported torch or cv2: {data}")
    if "ready" not in str(data["workers"]):
        raise SmokeError(f"the window's local workers never got ready: {data['workers']}")
    return data


def agent_pairing(app: Path, home: Path) -> float:
    """Start lama-agent (workers over tcp+Curve), pair a batch with it, stop it with SIGTERM."""
    env = clean_env(home, LAMA_WORKER_TRANSPORT="tcp")
    cmd = [str(app / "lama-agent"), "--bind", "tcp://127.0.0.1:0", "--workers", "1"]
    cmd += ["--no-announce", "--data-dir", str(home / "agent")]
    print("$", " ".join(cmd), flush=True)
    agent = subprocess.Popen(
        cmd, env=env, cwd=home, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: list[str] = []
    try:
        assert agent.stdout is not None
        link = None
        deadline = time.monotonic() + 120
        while link is None and time.monotonic() < deadline:
            line = agent.stdout.readline()
            if not line:
                break
            lines.append(line)
            link = re.search(r"lama://\S+", line)
        if link is None:
            raise SmokeError("lama-agent printed no pairing link:\n" + "".join(lines))
        pair = ["--pair", link.group(0), "--local-workers", "0"]
        seconds = batch(app, clean_env(home), home / "out-agent", *pair)
        workers = _children(agent.pid)
        agent.send_signal(signal.SIGTERM)
        code = agent.wait(timeout=60)
        if code != 0:
            raise SmokeError(f"lama-agent exited {code} after SIGTERM:\n{agent.stdout.read()}")
        left = [pid for pid in workers if _alive(pid)]
        if left:
            raise SmokeError(f"worker processes {left} outlived lama-agent")
        return seconds
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    source = Path(argv[0]).resolve()
    figures: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="lama-smoke-") as temp:
        root = Path(temp)
        home = root / "home"
        home.mkdir()
        try:
            app = unpack(source, root / "app")
            version = run([str(app / "lama-desktop"), "--version"], clean_env(home), 60, home)
            if not version.startswith("lama-desktop "):
                raise SmokeError(f"--version printed {version!r}")
            figures["version"] = version.strip()
            figures["installed"] = install_for_user(app, home)
            figures["batch_s"] = round(batch(app, clean_env(home), home / "out"), 2)
            starts = [window(app, home, i) for i in range(2)]
            figures["window_shown_s"] = [round(float(str(s["window_shown_s"])), 3) for s in starts]
            phases = [dict(s["phases_s"]) for s in starts]  # type: ignore[call-overload]
            figures["window_cpu_s"] = [round(p["cpu_at_shown"], 3) for p in phases]
            figures["window_rss_mb"] = round(int(str(starts[-1]["rss_bytes"])) / 2**20)
            figures["agent_batch_s"] = round(agent_pairing(app, home), 2)
        except (SmokeError, subprocess.TimeoutExpired, OSError, KeyError) as exc:
            print(f"SMOKE TEST FAILED: {exc}", file=sys.stderr)
            return 1
    cold = min(figures["window_shown_s"])  # type: ignore[type-var]
    figures["cold_start_goal_s"] = COLD_START_GOAL_S
    figures["cold_start_met"] = cold < COLD_START_GOAL_S
    print(json.dumps(figures, indent=2))
    print("smoke test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
