"""Secrets: their names, the one parser of the secrets file, the one file-mode check, and the one list
of values that must never be shown.

Secrets never come from bot.toml: they come from environment variables or a
secrets file (``NAME=value`` lines, ``#`` comments, an optional ``export``)
that is readable by its owner only.  tinybot reads them lazily, name by name,
so that paper mode never reads the trade key (``Secrets.requested`` records
which names were asked for).  Values are never logged or stored.

Two readers, one parser:

* ``Secrets.get`` (what tinybot uses a secret for) refuses a file others can
  read or a line it does not understand: a ``ConfigError`` naming the file,
  the line and the fix.
* ``Secrets.labelled`` (what must be hidden: log redaction, alert text,
  doctor's leak scan) reads every value it can, whatever the file's mode,
  and adds each URL of ``TINYBOT_ALERT_URLS`` and the tokens inside it, so
  the leak scan looks for exactly what the redaction hides.

This module imports only tinybot.base.errors (config imports it).
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from .errors import ConfigError
from .record import Record, record

SECRET_NAMES = (
    "TINYBOT_READ_KEY",
    "TINYBOT_READ_SECRET",
    "TINYBOT_TRADE_KEY",
    "TINYBOT_TRADE_SECRET",
    "TINYBOT_LLM_KEY",
    "TINYBOT_ALERT_URLS",
    "TINYBOT_TELEGRAM_TOKEN",
)
MIN_LEN = 4  # a shorter value is not hidden: replacing "abc" in every text would garble it, and hides nothing
MIN_TOKEN_LEN = 8  # a part of an alert URL worth hiding on its own


def _error(message: str) -> Exception:
    return ConfigError(message)


# --- the file ---------------------------------------------------------------------


@record
class FileProblem(Record):
    """Why tinybot will not read a secrets file, and the command that fixes it."""

    what: str  # "readable by others (mode 644)"
    fix: str  # "chmod 600 /home/pi/.tinybot/secrets.env"


def file_problem(path: Path) -> FileProblem | None:
    """The one mode check: the file must be its owner's alone.  None when it is (or does not exist)."""
    try:
        st = Path(path).stat()
    except FileNotFoundError:
        return None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        return FileProblem(f"readable by others (mode {stat.S_IMODE(st.st_mode):o})", f"chmod 600 {path}")
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        return FileProblem("not owned by you", f"chown $USER {path} && chmod 600 {path}")
    return None


def parse(text: str) -> tuple[dict[str, str], list[str]]:
    """The one parser: ``NAME=value`` lines -> (values by name, problems as "line N: ..." in line order)."""
    values: dict[str, str] = {}
    problems: list[str] = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            problems.append(f"line {n}: expected NAME=value")
            continue
        name, value = (s.strip() for s in line.split("=", 1))
        name = name.removeprefix("export ").strip()
        if name not in SECRET_NAMES:
            problems.append(f"line {n}: unknown secret {name!r} (known: {', '.join(SECRET_NAMES)})")
            continue
        values[name] = value.strip('"').strip("'")
    return values, problems


def read_file(path: Path | None, *, strict: bool = True) -> dict[str, str]:
    """The secrets file's values by name ({} when there is none).

    ``strict``: refuse (ConfigError) a file others can read, not yours, not UTF-8, or with a line that is
    not ``NAME=value`` of a known name.  Not strict: whatever can be read, for hiding and for doctor.
    """
    if path is None or not path.exists():
        return {}
    if not strict:
        return parse(path.read_text(encoding="utf-8", errors="replace"))[0]
    problem = file_problem(path)
    if problem is not None:
        raise _error(f"{path}: secrets file is {problem.what}; run `{problem.fix}`")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise _error(f"{path}: secrets file is not UTF-8 text; write it again as NAME=value lines") from None
    values, problems = parse(text)
    if problems:
        raise _error(f"{path}: {problems[0]}")
    return values


ENVIRONMENT, FILE = "environment", "file"  # where a value came from


def found(path: Path | None, name: str, file_values: dict[str, str] | None = None) -> tuple[str | None, str | None]:
    """The one rule of where a value comes from: (value, ENVIRONMENT or FILE), the environment winning;
    (None, None) when neither sets it.  ``file_values``: the file as already read (else read leniently)."""
    value = os.environ.get(name)
    if value:
        return value, ENVIRONMENT
    value = (file_values if file_values is not None else read_file(path, strict=False)).get(name)
    return (value, FILE) if value else (None, None)


def lookup(path: Path | None, name: str) -> str | None:
    """A value as tinybot would find it (environment first), read leniently: for doctor's checks."""
    return found(path, name)[0]


def where(path: Path | None, name: str) -> str:
    """Where a person changes ``name``'s value: the environment variable when the value came from there (it
    wins over the file, so editing the file would change nothing), else its line in the secrets file."""
    if found(path, name)[1] == ENVIRONMENT:
        return (
            f"the environment variable {name} (it comes from there, not from {path}: change or unset it where it is"
            " set, e.g. your shell's `export` or the systemd unit's `Environment=`)"
        )
    return f"{name} in {path}"


# --- what must never be shown --------------------------------------------------------


def split_urls(text: str | None) -> list[str]:
    """TINYBOT_ALERT_URLS holds several URLs, separated by spaces or commas."""
    return [u for u in re.split(r"[\s,]+", text or "") if u]


def url_tokens(url: str) -> list[str]:
    """The token-ish parts of an apprise URL (path segments, user:pass), each worth hiding on its own."""
    m = re.match(r"^[a-z0-9+]+://(.*)$", url, re.I)
    if not m:
        return []
    rest = m.group(1).split("?", 1)[0]
    parts = re.split(r"[/@:]", rest)
    return [p for p in parts if len(p) >= MIN_TOKEN_LEN and not re.fullmatch(r"[\d.]+|[a-z.-]+", p, re.I)]


def expand(value: str) -> list[str]:
    """A value, each URL in it and each token of those URLs: everything of it that a text may carry."""
    parts = split_urls(value)
    out = [value] + [p for p in parts if len(p) >= MIN_LEN] + [t for p in parts for t in url_tokens(p)]
    return [v for v in dict.fromkeys(out) if len(v) >= MIN_LEN]


class Secrets:
    """Environment first, then the secrets file; read one name at a time (see the module's docstring)."""

    def __init__(self, path: Path | None):
        self.path = path
        self.requested: list[str] = []
        self.origins: dict[str, str] = {}  # name -> ENVIRONMENT or FILE, for each value handed out
        self._file: dict[str, str] | None = None

    def get(self, name: str) -> str | None:
        if name not in SECRET_NAMES:
            raise KeyError(name)
        self.requested.append(name)
        if os.environ.get(name):
            value, origin = found(self.path, name, {})
        else:
            value, origin = found(self.path, name, self._from_file())
        if origin is not None:
            self.origins[name] = origin
        return value

    def pair(self, key_name: str, secret_name: str) -> tuple[str, str] | None:
        key, secret = self.get(key_name), self.get(secret_name)
        if key and secret:
            return key, secret
        if key or secret:
            missing = secret_name if key else key_name
            raise _error(f"{missing} is not set but {key_name if key else secret_name} is; set both or neither")
        return None

    def _from_file(self) -> dict[str, str]:
        if self._file is None:
            self._file = read_file(self.path, strict=True)
        return self._file

    def labelled(self) -> dict[str, str]:
        """Every value worth hiding -> the name it belongs to, longest first (a value containing another is
        replaced whole).  Environment and file both, whatever the file's mode: hiding more is never wrong."""
        found: list[tuple[str, str]] = [(os.environ[n], n) for n in SECRET_NAMES if os.environ.get(n)]
        try:
            found += [(v, n) for n, v in read_file(self.path, strict=False).items() if v]
        except OSError:
            pass
        out: dict[str, str] = {}
        for value, name in found:
            for v in expand(value):
                out.setdefault(v, name)
        return dict(sorted(out.items(), key=lambda kv: len(kv[0]), reverse=True))

    def values(self) -> list[str]:
        """Every secret value that is set, with its URLs and their tokens (for redaction and leak checks)."""
        return list(self.labelled())


def secret_values(cfg) -> list[str]:
    """cfg's secret values to hide (``Secrets.values``); never raises: hiding must not break a log line."""
    try:
        return list(cfg.secrets().values())
    except Exception:
        return []
