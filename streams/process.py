"""A tkonto worker as a child process: used by the demo, the tests and the benchmark."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from .broker import free_port, spawn_child, stop_child
from .settings import Settings


class WorkerProcess:
    def __init__(self, settings: Settings, log_file: Path | None = None, port: int | None = None):
        self.settings = settings.with_overrides(web_port=port or free_port())
        self.log_file = log_file
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def url(self) -> str:
        return f"http://{self.settings.web_host}:{self.settings.web_port}"

    def start(self) -> "WorkerProcess":
        env = {**os.environ, **self.settings.as_env()}
        out = self.log_file.open("ab") if self.log_file else subprocess.DEVNULL
        self.proc = spawn_child([sys.executable, "-m", "streams.cli", "worker"], env=env,
                                stdout=out, stderr=subprocess.STDOUT)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def get(self, path: str, timeout: float = 5.0, headers: dict | None = None) -> tuple[int, bytes]:
        request = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def wait_ready(self, timeout: float = 60.0, path: str = "/ready") -> None:
        """Wait until the worker answers 200 on ``path`` (/ready: partitions assigned)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"worker exited with code {self.proc.returncode}; see {self.log_file}")
            try:
                if self.get(path, timeout=1.0)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"worker not ready at {self.url}{path} after {timeout}s; see {self.log_file}")

    def metric_sum(self, name: str, attempts: int = 3) -> float:
        """Sum of every sample of metric ``name`` (all label values); 0 when the worker has
        not exported it yet. Raises when the worker does not answer (never a silent 0)."""
        return self.metric_sums([name], attempts)[name]

    def metric_sums(self, names: list[str], attempts: int = 3) -> dict[str, float]:
        """``metric_sum`` of several metrics from one scrape (a scrape costs the worker ~4 ms
        of CPU, on the thread that shares the GIL with the pipeline)."""
        for attempt in range(attempts):
            try:
                status, body = self.get("/metrics", timeout=5.0)
                if status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        else:
            raise RuntimeError(f"worker at {self.url} did not serve /metrics; see {self.log_file}")
        totals = dict.fromkeys(names, 0.0)
        for line in body.decode().splitlines():
            for name in names:
                if line.startswith(name) and (line[len(name)] in "{ "):
                    totals[name] += float(line.rsplit(" ", 1)[1])
        return totals

    def registered(self) -> int:
        return int(self.metric_sum("tkonto_events_registered_total"))

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush, no commit (the crash the system must survive)."""
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        stop_child(self.proc, timeout=15.0)
