"""Drive Debian's headless Chromium for tests: load a URL, dump the DOM, take a screenshot.

One Chromium run per ``load``: ``--dump-dom`` prints the DOM after the page's load event,
``--screenshot`` writes a PNG of the 1280x1024 window. Every run gets a fresh, throw-away
profile directory and its own process group; when the run ends (or times out) the whole
group is killed and the helper waits until no process of the run is alive, so no
Chromium is ever left behind.

If Chromium is missing: ``bash scripts/system-deps.sh`` (as root) installs it.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

CHROMIUM = os.environ.get("TKONTO_CHROMIUM", "/usr/bin/chromium")
WINDOW = "1280,1024"
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars", "--lang=sv-SE",
)


class BrowserError(RuntimeError):
    def __init__(self, message: str, profile: str | None = None):
        super().__init__(message)
        self.profile = profile  # the run's (removed) profile directory, to check for leftovers


@dataclass
class PageLoad:
    url: str
    dom: str
    screenshot: Path | None
    stderr: str
    profile: str  # the run's (removed) profile directory, to check for leftovers


def available() -> bool:
    return os.path.exists(CHROMIUM) and os.access(CHROMIUM, os.X_OK)


def _group_alive(pgid: int) -> list[int]:
    """Pids in process group ``pgid`` that are still alive (zombies do not count)."""
    alive = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # fields after the parenthesised command name: state ppid pgrp ...
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            alive.append(int(entry))
    return alive


def alive_with(marker: str) -> list[int]:
    """Pids of live (non-zombie) processes whose command line contains ``marker``."""
    alive = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().decode("utf-8", "replace")
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if marker in cmdline and stat[stat.rindex(")") + 2:].split()[0] not in ("Z", "X"):
            alive.append(int(entry))
    return alive


def _end_group(pgid: int, deadline: float = 5.0) -> None:
    """Kill the run's process group and wait until none of its processes is alive."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return
    end = time.monotonic() + deadline
    while _group_alive(pgid):
        if time.monotonic() > end:
            raise BrowserError(f"chromium processes {_group_alive(pgid)} survived SIGKILL")
        time.sleep(0.05)


def load(url: str, screenshot: Path | str | None = None, timeout: float = 60.0,
         window_size: str = WINDOW) -> PageLoad:
    """Load ``url`` in headless Chromium; return its DOM (and save a PNG at ``screenshot``)."""
    if not available():
        raise BrowserError(f"{CHROMIUM} not found: run 'bash scripts/system-deps.sh' as root to install chromium")
    profile = tempfile.mkdtemp(prefix="tkonto-chromium-")
    args = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", f"--window-size={window_size}", "--dump-dom"]
    if screenshot is not None:
        screenshot = Path(screenshot)
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        args.append(f"--screenshot={screenshot}")
    args.append(url)
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _end_group(proc.pid)
            proc.communicate()
            raise BrowserError(f"chromium did not finish loading {url} within {timeout:g} s", profile) from None
    finally:
        _end_group(proc.pid)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)
    stderr = err.decode("utf-8", "replace")
    if proc.returncode != 0:
        raise BrowserError(f"chromium exited with {proc.returncode} loading {url}: {stderr[-2000:]}", profile)
    dom = out.decode("utf-8", "replace")
    if not dom.strip():
        raise BrowserError(f"chromium printed no DOM for {url}: {stderr[-2000:]}", profile)
    if screenshot is not None and not (screenshot.exists() and screenshot.stat().st_size > 0):
        raise BrowserError(f"chromium wrote no screenshot for {url}: {stderr[-2000:]}", profile)
    return PageLoad(url, dom, screenshot, stderr, profile)


# -- reading a dumped DOM (no parser dependency beyond the standard library) ---------------
def text_of(fragment: str) -> str:
    """Visible text of an HTML fragment: tags removed, entities decoded, whitespace collapsed."""
    import html
    fragment = re.sub(r"<(script|style)\b.*?</\1>", " ", fragment, flags=re.S | re.I)
    text = html.unescape(re.sub(r"<[^>]+>", " ", fragment))
    return " ".join(text.replace("\u00a0", " ").split())


def table_rows(dom: str, table_id: str) -> list[list[str]]:
    """Cells' text of every body row of the table with ``id=table_id`` (raises if absent)."""
    m = re.search(rf'<table[^>]*\bid="{re.escape(table_id)}"[^>]*>(.*?)</table>', dom, flags=re.S)
    if not m:
        raise AssertionError(f"no table with id {table_id!r} in the page")
    body = re.search(r"<tbody>(.*?)</tbody>", m.group(1), flags=re.S)
    rows = re.findall(r"<tr\b[^>]*>(.*?)</tr>", body.group(1) if body else "", flags=re.S)
    return [[text_of(c) for c in re.findall(r"<t[hd]\b[^>]*>(.*?)</t[hd]>", row, flags=re.S)] for row in rows]


def element_text(dom: str, element_id: str) -> str:
    m = re.search(rf'<(\w+)[^>]*\bid="{re.escape(element_id)}"[^>]*>(.*?)</\1>', dom, flags=re.S)
    if not m:
        raise AssertionError(f"no element with id {element_id!r} in the page")
    return text_of(m.group(2))
