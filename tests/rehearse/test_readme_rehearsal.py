"""README §2, the live rehearsal against the simulator, followed as written (issue 23 item 11).

The two shell blocks are read out of the README and run by bash as they stand: the simulator's command,
then, "in another terminal", the rehearsal's own folder, config, secrets, `init`, `backup`, `doctor` and
`run`.  Only three things differ from a person's terminal, each for the test's sake and none in what
tinybot is asked: HOME is a temporary folder (``~/rehearsal``), the port is a free one instead of 8123
(tests run in parallel), and ``.venv/bin/tinybot`` is this interpreter's tinybot.  The claims checked are
the README's: `doctor` says GO without `--ignore-doctor`, the market moves, and the bot trades within
minutes (DCA's first buy is filled by the simulator).
"""

from __future__ import annotations

import pytest

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from helpers import ROOT

README = ROOT / "README.md"
WAIT_S = 120.0  # wall-clock bound on a loaded machine; a healthy run trades at its first tick


def block(name: str) -> str:
    text = README.read_text(encoding="utf-8")
    found = re.search(rf"<!-- {name}:begin -->\n```sh\n(.*?)```\n<!-- {name}:end -->", text, re.S)
    assert found, f"README has no {name} block"
    return found.group(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clone_with_venv(tmp_path: Path) -> Path:
    """A folder where `.venv/bin/tinybot` is this test's tinybot, as in the clone the README speaks from."""
    clone = tmp_path / "clone"
    bin_dir = clone / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    script = bin_dir / "tinybot"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m tinybot "$@"\n', encoding="utf-8")
    script.chmod(0o755)
    return clone


def environment(tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TINYBOT_")}
    env["HOME"] = str(tmp_path / "home")
    (tmp_path / "home").mkdir()
    return env


def wait_for_port(port: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else "the simulator exited"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"the simulator never listened on {port}")


def stop(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in that terminal
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    return proc.stdout.read() if proc.stdout else ""


class Terminal:
    """What the bot prints, read as it prints: the test watches for what a person would watch for."""

    def __init__(self, proc: subprocess.Popen):
        self.lines: list[str] = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(iter(proc.stdout.readline, "")), daemon=True)
        self.reader.start()

    def text(self) -> str:
        return "".join(self.lines)

    def prices(self) -> set[str]:
        return set(re.findall(r"\| BTC-EUR (\d+\.\d+) \|", self.text()))


def filled(db: Path) -> int:
    if not db.exists():
        return 0
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute("SELECT COUNT(*) FROM trade_executions WHERE state = 'filled'").fetchone()[0]
    except sqlite3.Error:
        return 0
    finally:
        conn.close()


@pytest.mark.waits
def test_readme_rehearsal_works_as_written(tmp_path):
    port = free_port()
    sim_cmd, steps = (block(n).replace("8123", str(port)) for n in ("rehearsal-sim", "rehearsal"))
    assert "--step-every" in sim_cmd and steps.rstrip().endswith(".venv/bin/tinybot run")
    assert steps.index("tinybot init") < steps.index("tinybot backup")  # backup needs the database init makes
    clone, env = clone_with_venv(tmp_path), environment(tmp_path)
    spawn = dict(cwd=clone, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sim = subprocess.Popen(["bash", "-c", sim_cmd], start_new_session=True, **spawn)
    bot = None
    try:
        wait_for_port(port, sim)
        bot = subprocess.Popen(["bash", "-e", "-c", steps], start_new_session=True, **spawn)
        terminal = Terminal(bot)
        db = tmp_path / "home" / "rehearsal" / "tinybot.db"
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline and bot.poll() is None and not filled(db):
            time.sleep(1)
        trades = filled(db)
        while time.monotonic() < deadline and bot.poll() is None and len(terminal.prices()) < 2:
            time.sleep(1)  # a few more ticks, until the price the ticks print has moved
    finally:
        if bot is not None:
            stop(bot)
            terminal.reader.join(10)
        stop(sim)
    out = terminal.text()
    assert "GO" in out and "NO-GO" not in out, out
    assert trades >= 1, out
    assert len(terminal.prices()) >= 2, out  # the market moves: rules has something to cross
