"""What a replay runs with: the user's bot.toml with --set overrides, pointed at the simulator and a scratch folder."""

from __future__ import annotations

import dataclasses
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

from ...base.config import AlertsConfig, Config, from_dict
from ...base.errors import ConfigError
from ...base.secrets import SECRET_NAMES, Secrets
from .plan import ReplayError
from .simulator import REPLAY_KEY, REPLAY_SECRET

KEEP_DAYS = 36_500  # retention must not prune the replay's own audit rows (simulated time moves fast)
# The files replay writes, all inside its scratch folder (one it created, or an empty one given with --keep):
# never named like the live ones, so no command ever mistakes them for the bot's own (issue 20, item 2)
SCRATCH_CONFIG = "replay.toml"


def parse_value(text: str):
    """A --set value: TOML if it parses (3, "2h", ["BTC-EUR"], true), else the plain string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_sets(cfg: Config, sets: list[str] | tuple[str, ...]) -> Config:
    """The user's bot.toml with ``key=value`` overrides, validated by the config's own rules."""
    if not sets:
        return cfg
    try:
        data = tomllib.loads(cfg.path.read_text(encoding="utf-8")) if cfg.path.exists() else {}
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ReplayError(f"{cfg.path}: cannot read: {e}") from None
    for item in sets:
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise ReplayError(f"--set {item!r}: write it as key=value, like rules.fast=8")
        *tables, name = key.split(".")
        node = data
        for t in tables:
            node = node.setdefault(t, {})
            if not isinstance(node, dict):
                raise ReplayError(f"--set {item}: {t} is not a table in {cfg.path.name}")
        node[name] = parse_value(value.strip())
    try:
        return from_dict(data, cfg.path)
    except ConfigError as e:
        raise ReplayError(f"--set: {e}") from None


class ReplaySecrets(Secrets):
    """Every exchange key or secret is the simulator's throwaway one; the LLM key and alert URLs are never read."""

    def __init__(self):
        super().__init__(None)

    def get(self, name: str) -> str | None:
        if name not in SECRET_NAMES:
            raise KeyError(name)
        self.requested.append(name)
        if name in ("TINYBOT_LLM_KEY", "TINYBOT_ALERT_URLS"):
            return None
        return REPLAY_SECRET if name.endswith("_SECRET") else REPLAY_KEY

    def values(self) -> list[str]:
        return []


@dataclass(frozen=True)
class ReplayConfig(Config):
    def secrets(self) -> Secrets:
        return ReplaySecrets()


def scratch_folder(keep: Path | None) -> Path:
    """Where a replay writes: a new temporary folder, or ``keep`` if it is new or empty.  A folder that
    holds anything (a live config folder with its bot.toml and database) is refused: replay never writes
    outside a folder it created itself."""
    if keep is None:
        return Path(tempfile.mkdtemp(prefix="tinybot-replay-"))
    keep = Path(keep)
    if keep.exists() and (not keep.is_dir() or any(keep.iterdir())):
        raise ReplayError(
            f"--keep {keep}: it exists and is not an empty folder; replay keeps its files only in a new or"
            " empty folder (never next to a bot.toml): name one that does not exist yet"
        )
    keep.mkdir(parents=True, exist_ok=True)
    return keep


def scratch_config(
    cfg: Config, scratch: Path, url: str, markets: tuple[str, ...] | None, llm_url: str | None = None
) -> ReplayConfig:
    """The user's settings, pointed at the simulator and the scratch directory.

    ``markets`` (from --markets) replaces risk.allowlist and rules.markets; dca.market is kept only
    if it is one of them.  Without it the config's own lists stay as they are.  ``llm_url``: the
    replay's LLM stand-in (``RecordedLLM``); without it the llm advisor is left out.
    """
    risk, rules, dca = cfg.risk, cfg.rules, cfg.dca
    if markets:
        risk = dataclasses.replace(risk, allowlist=markets)
        rules = dataclasses.replace(rules, markets=markets)
        if dca.market and dca.market.upper().replace("/", "-") not in markets:
            dca = dataclasses.replace(dca, market=None)
    values = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    values.update(
        path=scratch / SCRATCH_CONFIG,
        mode="live",
        db="replay.db",
        risk=risk,
        rules=rules,
        dca=dca,
        advisors=tuple(a for a in cfg.advisors if a != "llm" or llm_url),
        # a replay never calls the provider on its own: without the stand-in the llm shadow is left out too
        scoreboard=dataclasses.replace(
            cfg.scoreboard, shadow=tuple(a for a in cfg.scoreboard.shadow if a != "llm" or llm_url)
        ),
        llm=dataclasses.replace(cfg.llm, base_url=llm_url) if llm_url else cfg.llm,
        exchange=dataclasses.replace(cfg.exchange, url=url, operator_id=cfg.exchange.operator_id or 1),
        scheduler=dataclasses.replace(cfg.scheduler, approval="auto", log_file="replay.log", keep_days=KEEP_DAYS),
        # a replay delivers no alert: its daily digest drew a chart nobody saw, most of a replay's time
        alerts=AlertsConfig(digest_at=""),
    )
    return ReplayConfig(**values)


def write_kept_config(scratch: Path) -> None:
    """The replay.toml of a kept folder: `tinybot --config DIR/replay.toml why N` (history, executions, ...)
    then reads its scratch database."""
    (scratch / SCRATCH_CONFIG).write_text(
        "# Written by `tinybot replay --keep`: its scratch database, to look around with\n"
        f"# tinybot --config {scratch / SCRATCH_CONFIG} why N   (or proposals, executions, history)\n"
        'mode = "paper"\ndb = "replay.db"\n',
        encoding="utf-8",
    )
