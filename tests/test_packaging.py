"""The README's upgrade path, `pip install .`, gives a tinybot that works.

A real, non-editable wheel is built from a copy of this checkout (with this
venv's setuptools, no build isolation, no index: nothing is downloaded) and
installed into a fresh venv.  The fresh venv borrows this venv's
site-packages for the dependencies (ccxt, click, ...) through a .pth line
appended *after* its own site-packages, so the tinybot it imports is the
installed wheel, never the checkout (asserted below).  Then the commands a
user runs after an upgrade run from that venv.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import tinybot
from helpers import ROOT
from helpers.once import built_once
from tinybot.store import db

# what a clean clone does not have: local state, build leftovers, caches
NOT_IN_A_CLONE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    "*.pyc",
    ".pytest_cache",
    ".ruff_cache",
    "tinybot-bench-*",
    "*.db",
    "*.db-*",
    "*.lock",
    "tinybot.log*",
)


def run(argv, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=120, **kw)
    assert r.returncode == 0, f"{' '.join(map(str, argv))} exited {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


def build_venv(tmp: Path) -> None:
    """The wheel in tmp/dist, installed into the venv tmp/venv; where its site-packages are in tmp/site.txt."""
    src = tmp / "src"  # a copy: setuptools writes build/ and *.egg-info into the tree it builds
    shutil.copytree(ROOT, src, symlinks=True, ignore=NOT_IN_A_CLONE)
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--no-cache-dir",
            "-q",
            "-w",
            tmp / "dist",
            src,
        ]
    )
    (wheel,) = (tmp / "dist").glob("tinybot-*.whl")

    home = tmp / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", home])
    py = home / "bin" / "python"
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            py,
            "install",
            "--no-deps",
            "--no-index",
            "--no-cache-dir",
            "-q",
            wheel,
        ]
    )
    site = Path(run([py, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).stdout.strip())
    # the dependencies, from this venv, after the wheel's own files (written after the install, so pip
    # never sees this venv's editable tinybot as "already installed")
    (site / "zz-test-venv-deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    (tmp / "site.txt").write_text(str(site))
    (tmp / "cwd").mkdir()  # never the checkout: `python -m` puts the working directory on sys.path


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> dict:
    tmp = built_once(tmp_path_factory, "packaging", build_venv)
    (wheel,) = (tmp / "dist").glob("tinybot-*.whl")
    home = tmp / "venv"
    site = Path((tmp / "site.txt").read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TINYBOT_", "PYTHON"))}
    env["TINYBOT_CONFIG"] = str(tmp / "home" / "bot.toml")
    env["HOME"] = str(tmp / "home")
    return {
        "wheel": wheel,
        "py": home / "bin" / "python",
        "bin": home / "bin",
        "site": site,
        "env": env,
        "cwd": tmp / "cwd",
        "tmp": tmp,
    }


def in_venv(v: dict, *argv) -> subprocess.CompletedProcess:
    return run(argv, env=v["env"], cwd=v["cwd"])


def test_the_wheel_holds_every_module_and_the_shipped_files(venv):
    names = set(zipfile.ZipFile(venv["wheel"]).namelist())
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "tinybot").rglob("*.py")}
    assert modules - names == set()  # every package is found, tinybot.rehearse.chaos included
    assert {"tinybot/schema.sql", "tinybot/bot.toml"} <= names
    installed = venv["site"] / "tinybot"
    for name in ("schema.sql", "bot.toml"):  # the files themselves, not the checkout's symlinks
        assert not (installed / name).is_symlink()
        assert (installed / name).read_text(encoding="utf-8") == (ROOT / name).read_text(encoding="utf-8")


def test_the_installed_tinybot_is_the_wheel_not_the_checkout(venv):
    r = in_venv(
        venv,
        venv["py"],
        "-c",
        "import tinybot, tinybot.store.db as d; print(tinybot.__file__); print(len(d.migrations()))",
    )
    where, n = r.stdout.split()
    assert Path(where).is_relative_to(venv["site"])
    assert int(n) == len(db.migrations())


def test_version(venv):
    r = in_venv(venv, venv["bin"] / "tinybot", "--version")
    assert r.stdout.strip() == f"tinybot, version {tinybot.__version__}"


def test_init_writes_the_example_config_and_a_migrated_database(venv):
    cfg = Path(venv["env"]["TINYBOT_CONFIG"])
    in_venv(venv, venv["bin"] / "tinybot", "init")
    assert cfg.read_text(encoding="utf-8") == (ROOT / "bot.toml").read_text(encoding="utf-8")
    conn = sqlite3.connect(cfg.parent / "tinybot.db")
    try:
        applied = [r[0] for r in conn.execute("SELECT name FROM schema_migrations ORDER BY rowid")]
    finally:
        conn.close()
    assert applied == [m.name for m in db.migrations()]


def test_the_chaos_harness_runs_from_the_installed_package(venv):
    # one seeded run through the simulator, forkserver workers and invariants, all from the wheel; the
    # tour's verdict on the guarantees is tests/rehearse/test_chaos.py's business (and 15 s), not packaging's
    r = in_venv(venv, venv["py"], "-m", "tinybot.rehearse.chaos", "--runs", "1", "--no-tour")
    assert "OK — replay:" in r.stdout, r.stdout
