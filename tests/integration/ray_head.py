"""A throw-away local Ray head on 127.0.0.1 for the Ray tests and benchmarks/bench_ray.py."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from tests.integration.cluster_support import PLUGIN_ENV

# Loopback only: without this Ray swaps 127.0.0.1 for the machine's outward address and its
# gRPC servers listen on every interface. Every Ray process here (head, agent, driver) gets it.
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


class RayHead:
    """`ray start --head --block` with `cpus` CPUs on 127.0.0.1, in its own process group."""

    def __init__(self, cpus: int = 2, own_session: bool = True) -> None:
        # own_session: a process group to kill at once. A benchmark passes False: Linux's
        # autogroup scheduler gives each session its own CPU share, which on a busy machine
        # would hand the Ray actors more CPU than worker processes in the caller's session.
        # Short: Ray's unix socket paths under the temp dir must fit in 107 characters.
        self.temp = Path(tempfile.mkdtemp(prefix="lray"))
        ray = Path(sys.executable).with_name("ray")
        self.log = (self.temp / "head.log").open("w+")
        self.process = subprocess.Popen(
            [
                str(ray), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
                "--port=0", f"--num-cpus={cpus}", "--num-gpus=0", "--include-dashboard=false",
                "--disable-usage-stats", f"--temp-dir={self.temp}",
            ],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=own_session,
            env=dict(os.environ, **RAY_ENV, **PLUGIN_ENV),
        )  # fmt: skip
        self.address = ""
        self.own_session = own_session
        deadline = time.monotonic() + 60
        while not self.address and time.monotonic() < deadline and self.process.poll() is None:
            time.sleep(0.2)
            if "Ray runtime started" in (self.temp / "head.log").read_text():
                self.address = (self.temp / "ray_current_cluster").read_text().strip()
        if not self.address:
            self.stop()
            raise RuntimeError("the Ray head did not start")

    def descendants(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def actors(self, running: bool = False) -> list[psutil.Process]:
        """Our actors' processes (Ray titles them "ray::InpaintActor[.run]")."""
        found = []
        for proc in self.descendants():
            try:
                title = " ".join(proc.cmdline())
            except psutil.Error:
                continue
            if "InpaintActor" in title and (not running or "InpaintActor.run" in title):
                found.append(proc)
        return found

    def stop(self) -> None:
        """Kill the head and every process it started (the cluster vanishing, or teardown)."""
        family = self.descendants()
        if self.process.poll() is None:
            if self.own_session:
                os.killpg(self.process.pid, signal.SIGKILL)
            else:
                self.process.kill()
        for proc in family:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        self.process.wait(10)
        psutil.wait_procs(family, timeout=10)
        self.log.close()
        shutil.rmtree(self.temp, ignore_errors=True)
