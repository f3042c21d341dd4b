"""A folder built once for the whole test run, however many xdist workers need it."""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path
from typing import Callable


def built_once(tmp_path_factory, name: str, build: Callable[[Path], None]) -> Path:
    """The folder ``name``, filled by ``build(folder)`` in the first process that asks; the others wait.

    A module-scoped fixture runs once per xdist worker that runs one of its tests: the packaging venv (a wheel
    built and installed, ~9 s) was built up to four times.  Workers share the parent of their base temp dir;
    the build happens under an exclusive lock there, and a marker file says it finished (a build that raised
    leaves none, and the next asker builds again and reports its own failure).
    """
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    folder = root / name
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / ".built").exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            (folder / ".built").touch()
    return folder
