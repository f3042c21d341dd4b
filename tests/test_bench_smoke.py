"""bench/run.py in --quick mode, so the benchmark script cannot rot.  Not a timed test: figures are not checked."""

from __future__ import annotations

import json
import subprocess
import sys

from helpers import ROOT


def test_bench_quick_runs_every_section_and_reports_figures(tmp_path):
    out = tmp_path / "bench.json"
    r = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "run.py"),
            "--quick",
            "--only",
            "execute,guards,startup,growth,storm,replay",
            "--dir",
            str(tmp_path),
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    names = {row["name"] for row in rows}
    assert {"execute() p50", "tinybot kill: wall", "tinybot status: wall"} <= names
    assert any(n.startswith("evaluate() p50") for n in names)
    # the functional checks inside the bench hold even in quick mode
    imports = [row for row in rows if row["name"].endswith("imports ccxt?")]
    assert imports and all(row["ok"] for row in imports), imports
    assert {"replay ticks per second", "replay tick vs an idle live tick"} <= names
    assert any(n.startswith("sweep of 4") for n in names)  # --jobs: all cores against one
    assert all("docs" in row for row in rows)  # the figures docs/PERFORMANCE.md last wrote down, beside each
    storm = [row for row in rows if row["section"] == "storm"]
    assert storm and all(row["ok"] for row in storm), storm
    assert not list(tmp_path.glob("tinybot-bench-*")), "the bench left its databases behind"


def test_bench_quick_run_section_against_the_simulator(tmp_path):
    """`tinybot run` in live mode against the simulator, a few ticks."""
    out = tmp_path / "bench.json"
    r = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "run.py"),
            "--quick",
            "--only",
            "run,growth",
            "--dir",
            str(tmp_path),
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    rows = {row["name"]: row for row in json.loads(out.read_text())["rows"]}
    assert rows["tinybot run: peak RSS"]["raw_kib"] > 0
    assert "bytes per idle tick (rows + indexes)" in rows


def test_bench_quick_wear_section(tmp_path):
    """SD-card wear: a real `tinybot run` against the simulator, one measured tick, and the in-process breakdown."""
    out = tmp_path / "bench.json"
    r = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "run.py"),
            "--quick",
            "--only",
            "wear",
            "--wear-interval",
            "1s",
            "--wear-ticks",
            "1",
            "--dir",
            str(tmp_path),
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    names = {row["name"] for row in json.loads(out.read_text())["rows"]}
    assert {"→ per day at the 1-minute tick", "  in-process total"} <= names, names


def test_bench_rejects_an_unknown_section(tmp_path):
    r = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--only", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert r.returncode == 2 and "unknown section(s): nope" in r.stderr
