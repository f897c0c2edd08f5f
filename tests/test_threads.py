"""streams/threads.py: a thread named at the kernel, and CPU time read back by that name."""
from __future__ import annotations

import os
import sys
import threading

import pytest

from streams.threads import cpu_by_thread, name_os_thread

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="kernel thread names are Linux's")


def test_a_named_thread_is_found_by_its_name_with_its_cpu_time():
    busy, done = threading.Event(), threading.Event()

    def work():
        name_os_thread()  # its threading name, cut to the kernel's 15 bytes
        total = 0
        for i in range(3_000_000):
            total += i
        busy.set()
        done.wait(10)

    thread = threading.Thread(target=work, name="tkonto-test-busy-thread")
    thread.start()
    try:
        assert busy.wait(30)
        threads = cpu_by_thread(os.getpid())
        assert "tkonto-test-bus" in threads  # 15 bytes
        assert threads["tkonto-test-bus"] > 0.0  # the loop above ran on it
        assert "main" in threads  # the process's first thread, whatever its kernel name
    finally:
        done.set()
        thread.join()


def test_a_process_that_is_gone_has_no_threads():
    assert cpu_by_thread(2 ** 22 + 12345) == {}  # above the kernel's largest pid
