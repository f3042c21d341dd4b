"""bot.toml + secrets -> frozen dataclasses, validated strictly.

Every problem is a ``ConfigError`` that names the file and the key
(``bot.toml: risk.max_trade_eur: must not be negative``) and nothing starts.
Secrets never come from bot.toml: they come from environment variables or a
secrets file readable by its owner only (tinybot.base.secrets; ``Config.secrets()`` reads
them).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
from dataclasses import field
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .clock import format_duration, parse_duration
from .markets import MARKET_RE, normalise_market
from .secrets import Secrets
from .record import Record, record

DEFAULT_CONFIG = Path("~/.tinybot/bot.toml")


# --- typed field markers -------------------------------------------------
# A field's metadata says how to read it from TOML (its "kind", one converter
# in CONVERTERS below) and the range it must lie in; defaults are the values a
# missing key takes.  Money is Decimal, durations are timedelta.  Every number
# and duration has a range, so a typo of a few zeros is an error naming the
# key, not an overflow deep inside the bot.

MAX_EUR = Decimal("1000000000")  # far past any real setting: only a typo of many zeros (or 1e30) gets here
INT64_MAX = 2**63 - 1
MAX_TTL = timedelta(days=30)


def money(default: str, *, allow_zero: bool = True, maximum: Decimal = MAX_EUR) -> Any:
    return field(default=Decimal(default), metadata={"kind": "money", "allow_zero": allow_zero, "max": maximum})


def fraction(default: str, *, maximum: str) -> Any:
    """A rate like a fee: 0.0025 means 0.25 %."""
    return field(default=Decimal(default), metadata={"kind": "fraction", "max": Decimal(maximum)})


def duration(default: str, *, minimum: str = "0s", maximum: str = "30d") -> Any:
    return field(
        default=parse_duration(default),
        metadata={"kind": "duration", "min": parse_duration(minimum), "max": parse_duration(maximum)},
    )


def integer(default: int | None, *, minimum: int | None = 0, maximum: int | None = None) -> Any:
    return field(default=default, metadata={"kind": "int", "min": minimum, "max": maximum})


def text(default: str | None, *, choices: tuple[str, ...] | None = None) -> Any:
    return field(default=default, metadata={"kind": "str", "choices": choices})


def market(default: str | None) -> Any:
    """One EUR market name, stored as Bitvavo spells it ("btc/eur" in bot.toml is "BTC-EUR")."""
    return field(default=default, metadata={"kind": "market"})


def markets(default: tuple[str, ...] = ()) -> Any:
    return field(default=default, metadata={"kind": "markets"})


def strings(default: tuple[str, ...] = ()) -> Any:
    return field(default=default, metadata={"kind": "strings"})


def prices(default: dict | None = None) -> Any:
    return field(default_factory=lambda: dict(default or {}), metadata={"kind": "prices"})


def boolean(default: bool) -> Any:
    return field(default=default, metadata={"kind": "bool"})


def integers(default: tuple[int, ...] = ()) -> Any:
    return field(default=default, metadata={"kind": "ints"})


@record
class RiskConfig(Record):
    """[risk]: the caps every buy is checked against (tinybot.trade.guards)."""

    allowlist: tuple[str, ...] = markets(())
    max_trade_eur: Decimal = money("10")
    max_daily_eur: Decimal = money("20")
    max_exposure_eur: Decimal = money("25")
    cooldown: timedelta = duration("1h", maximum="30d")
    anti_flip: timedelta = duration("6h", maximum="30d")
    proposal_ttl: timedelta = duration("30m", minimum="1s", maximum="30d")
    # what the caps assume a live order pays (your Bitvavo tier; 0.25 % taker at the lowest)
    fee_rate: Decimal = fraction("0.0025", maximum="0.05")
    # room for a live market buy by base amount to fill above the ask; counted by every cap
    slippage_margin: Decimal = fraction("0.02", maximum="0.5")
    # a buy must leave the position worth the €5 minimum plus this share at the bid (tinybot.base.sizing)
    sellable_margin: Decimal = fraction("0.10", maximum="1")
    # propose the smallest buy (within the caps) that makes a stranded position sellable again
    top_up_to_exit: bool = boolean(False)


@record
class PaperConfig(Record):
    """[paper]: the simulated account of paper mode."""

    starting_eur: Decimal = money("25")
    taker_fee: Decimal = fraction("0.0025", maximum="0.05")
    # Fixed mid prices per market: paper mode then needs no network at all.
    prices: dict = prices()


@record
class ExchangeConfig(Record):
    """[exchange]: how live mode reaches Bitvavo."""

    operator_id: int | None = integer(None, minimum=1, maximum=INT64_MAX)  # Bitvavo: a 64-bit integer
    url: str | None = text(None)
    access_window: timedelta = duration("10s", maximum="1d")  # Bitvavo's own range: _cross_checks
    timeout: timedelta = duration("8s", minimum="100ms", maximum="2m")
    reconcile_grace: timedelta = duration("60s", maximum="1d")


@record
class SchedulerConfig(Record):
    """[scheduler]: the loop's pace, approval and log."""

    interval: timedelta = duration("1m", minimum="1s", maximum="1d")
    approval: str = text("auto", choices=("auto", "manual"))
    log_file: str = text("tinybot.log")
    log_max_bytes: int = integer(1_000_000, minimum=10_000, maximum=10_000_000_000)
    log_backups: int = integer(3, minimum=0, maximum=1000)
    keep_days: int = integer(30, minimum=1, maximum=36500)


@record
class RulesConfig(Record):
    """[rules]: the moving-average crossover advisor."""

    markets: tuple[str, ...] = markets(())
    candle_interval: str = text("1h", choices=("1m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d"))
    fast: int = integer(12, minimum=1, maximum=1000)
    slow: int = integer(26, minimum=2, maximum=1000)
    buy_eur: Decimal = money("6", allow_zero=False)
    # the books (tinybot.trade.book) a cross down sells from: its own only, unless you add e.g. "dca"
    sell_from: tuple[str, ...] = strings(("rules",))


@record
class ExitsConfig(Record):
    """Protective exits (tinybot.advisors.exits): shares of the position's average cost; 0 = off."""

    stop_loss: Decimal = fraction("0", maximum="0.9")  # sell all when the bid falls this far below cost
    take_profit: Decimal = fraction("0", maximum="10")  # sell all when the bid rises this far above cost
    trailing_stop: Decimal = fraction("0", maximum="0.9")  # sell all when the bid falls this far below its peak
    # the books it watches, each on its own average cost (dca, the long-run holding, is not watched by default)
    books: tuple[str, ...] = strings(("rules", "llm", "manual"))


@record
class DcaConfig(Record):
    """[dca]: the regular buy of one market."""

    market: str | None = market(None)
    buy_eur: Decimal = money("6", allow_zero=False)
    every: timedelta = duration("7d", minimum="1s", maximum="365d")


@record
class LlmConfig(Record):
    """[llm]: the language-model advisor, its prices and budgets."""

    base_url: str = text("https://api.openai.com/v1")
    model: str = text("gpt-4o-mini")
    max_tokens: int = integer(400, minimum=16, maximum=1_000_000)
    price_in_per_mtok_eur: Decimal = money("0.15")
    price_out_per_mtok_eur: Decimal = money("0.60")
    daily_budget_eur: Decimal = money("0.05")
    monthly_budget_eur: Decimal = money("1.00")
    timeout: timedelta = duration("30s", minimum="100ms", maximum="10m")
    reservation_expiry: timedelta = duration("1h", minimum="1m", maximum="30d")
    every: timedelta = duration("1h", maximum="30d")
    # the model's training cutoff "YYYY-MM-DD": replay refuses to score the llm advisor before it (docs/SCORE.md)
    knowledge_cutoff: str | None = text(None)


@record
class AlertsConfig(Record):
    """[alerts]: where alerts, the heartbeat and the daily digest go."""

    urls: tuple[str, ...] = strings(())
    min_interval: timedelta = duration("15m", maximum="7d")
    # push URL pinged after each good tick (healthchecks.io, Uptime Kuma): tinybot.loop.heartbeat
    heartbeat_url: str | None = text(None)
    # the daily digest (tinybot.owner.digest): local time "HH:MM" (the config's timezone), "" = off
    digest_at: str = text("21:00")
    # issue 23 (phone): fills alert one by one ("each"), go into the daily digest ("digest"), or not at all ("off")
    fills: str = text("each", choices=("each", "digest", "off"))
    # the URL pinged when a tick fails; unset = heartbeat_url + "/fail" (healthchecks.io style); "" = none
    heartbeat_fail_url: str | None = text(None)


@record
class TelegramConfig(Record):
    """The owner's phone (tinybot.owner.telegram): only these chats are served; the token is a secret."""

    chat_ids: tuple[int, ...] = integers(())
    api_url: str = text("https://api.telegram.org")
    allow_resume: bool = boolean(False)
    poll_timeout: timedelta = duration("25s", maximum="50s")


@record
class SafetyConfig(Record):
    """[safety]: what stops trading on its own (loss, errors, unknown orders)."""

    max_daily_loss_eur: Decimal = money("5")
    max_consecutive_errors: int = integer(5, minimum=1, maximum=100_000)
    unknown_limit: timedelta = duration("15m", minimum="1s", maximum="30d")


@record
class ScoreboardConfig(Record):
    """The scoreboard (issue 25, docs/SCORE.md): advisors that run in the shadows beside the live ones, each on
    its own virtual book (tinybot.trade.shadow), never trading."""

    shadow: tuple[str, ...] = strings(())


@record
class Config(Record):
    """The whole bot.toml, one attribute per top-level key and per section."""

    path: Path
    mode: str = text("paper", choices=("paper", "live"))
    db: str = text("tinybot.db")
    secrets_file: str = text("secrets.env")
    advisors: tuple[str, ...] = strings(())
    # the day of the daily cap, the LLM's day and month budgets, reports and exports ("UTC" when unset)
    timezone: str = text("UTC")
    risk: RiskConfig = field(default_factory=RiskConfig)
    paper: PaperConfig = field(default_factory=PaperConfig)
    exchange: ExchangeConfig = field(default_factory=ExchangeConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    rules: RulesConfig = field(default_factory=RulesConfig)
    dca: DcaConfig = field(default_factory=DcaConfig)
    exits: ExitsConfig = field(default_factory=ExitsConfig)
    llm: LlmConfig = field(default_factory=LlmConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    telegram: TelegramConfig = field(default_factory=TelegramConfig)
    scoreboard: ScoreboardConfig = field(default_factory=ScoreboardConfig)

    @property
    def active_advisors(self) -> tuple[str, ...]:
        """The advisors a tick runs: ``advisors``, plus ``exits`` when an [exits] rule is set and ``top_up``
        when [risk] top_up_to_exit is on."""
        out = list(self.advisors)
        if (self.exits.stop_loss or self.exits.take_profit or self.exits.trailing_stop) and "exits" not in out:
            out.append("exits")
        if self.risk.top_up_to_exit and "top_up" not in out:
            out.append("top_up")
        return tuple(out)

    @property
    def tz(self):
        """The configured ``timezone`` as a ZoneInfo (validated when the config loads)."""
        from zoneinfo import ZoneInfo

        return ZoneInfo(self.timezone)

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    @property
    def db_path(self) -> Path:
        return (self.base_dir / self.db).resolve()

    @property
    def lock_path(self) -> Path:
        return self.db_path.with_suffix(self.db_path.suffix + ".lock")

    @property
    def log_path(self) -> Path:
        return (self.base_dir / self.scheduler.log_file).resolve()

    @property
    def secrets_path(self) -> Path:
        return (self.base_dir / self.secrets_file).resolve()

    def secrets(self) -> "Secrets":
        return Secrets(self.secrets_path)


SECTIONS = {
    "risk": RiskConfig,
    "paper": PaperConfig,
    "exchange": ExchangeConfig,
    "scheduler": SchedulerConfig,
    "rules": RulesConfig,
    "dca": DcaConfig,
    "exits": ExitsConfig,
    "llm": LlmConfig,
    "alerts": AlertsConfig,
    "safety": SafetyConfig,
    "telegram": TelegramConfig,
    "scoreboard": ScoreboardConfig,
}
# The books a fill can belong to (tinybot.trade.book): an advisor's, a person's (manual) or nobody's (external).
# Named here because bot.toml names them (rules.sell_from, exits.books); the book imports them from here.
MANUAL, EXTERNAL = "manual", "external"
BUILTIN_BOOKS = ("dca", "rules", "llm", MANUAL, EXTERNAL)

KNOWN_ADVISORS = ("rules", "dca", "llm", "top_up", "exits")


def config_path(explicit: str | os.PathLike | None = None) -> Path:
    """--config, else $TINYBOT_CONFIG, else ~/.tinybot/bot.toml."""
    chosen = explicit or os.environ.get("TINYBOT_CONFIG") or DEFAULT_CONFIG
    return Path(chosen).expanduser().resolve()


def load(path: str | os.PathLike | None = None, *, must_exist: bool = True) -> Config:
    p = config_path(path)
    if not p.exists():
        if must_exist:
            raise ConfigError(f"no config file at {p}; run `tinybot init` (or pass --config / set TINYBOT_CONFIG)")
        return Config(path=p)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML: {e}") from None
    except OSError as e:
        raise ConfigError(f"{p}: cannot read: {e.strerror}") from None
    return from_dict(data, p)


def from_dict(data: dict, path: Path) -> Config:
    top_values: dict[str, Any] = {}
    for key, value in data.items():
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: {key}: must be a table ([{key}])")
            top_values[key] = _read_section(SECTIONS[key], value, key, path)
        else:
            top_values[key] = value
    cfg_fields = {f.name: f for f in dataclasses.fields(Config) if f.name != "path" and f.name not in SECTIONS}
    plain = {}
    for key, value in list(top_values.items()):
        if key in SECTIONS:
            continue
        if key not in cfg_fields:
            raise ConfigError(f"{path}: {key}: unknown key{_suggest(key, list(cfg_fields) + list(SECTIONS))}")
        plain[key] = _coerce(cfg_fields[key], value, key, path)
    cfg = Config(path=path, **plain, **{k: v for k, v in top_values.items() if k in SECTIONS})
    _cross_checks(cfg)
    return cfg


def _read_section(cls, table: dict, section: str, path: Path):
    known = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in table.items():
        dotted = f"{section}.{key}"
        if key not in known:
            raise ConfigError(f"{path}: {dotted}: unknown key{_suggest(key, list(known))}")
        values[key] = _coerce(known[key], value, dotted, path)
    return cls(**values)


def _suggest(key: str, options: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(key, options, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _coerce(f: dataclasses.Field, value: Any, key: str, path: Path) -> Any:
    convert = CONVERTERS.get(f.metadata.get("kind"))
    if convert is None:
        raise AssertionError(f"field {f.name} has no kind")
    try:
        return convert(value, f.metadata, key, path)
    except _Bad as e:
        raise ConfigError(f"{path}: {key}: {e}") from None


class _Bad(Exception):
    """What is wrong with one value; _coerce adds the file and the key."""


def _decimal(value: Any, what: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _Bad(f"must be {what}, not {type(value).__name__}")
    try:
        d = Decimal(str(value).strip())
    except InvalidOperation:
        raise _Bad(f"{value!r} is not a number") from None
    if not d.is_finite() or (isinstance(value, float) and not math.isfinite(value)):
        raise _Bad("must be a finite amount")
    if d < 0:
        raise _Bad("must not be negative")
    return Decimal(format(d, "f"))  # 1e1 is 10: no exponent survives into storage or print


def _money(value, meta, key, path) -> Decimal:
    d = _decimal(value, 'an amount in EUR like 10 or "10.50"')
    if d == 0 and not meta.get("allow_zero", True):
        raise _Bad("must be greater than zero")
    if d > meta.get("max", MAX_EUR):
        raise _Bad(f"must be at most {format(meta.get('max', MAX_EUR), 'f')}")
    return d


def _fraction(value, meta, key, path) -> Decimal:
    d = _decimal(value, "a fraction like 0.0025 (= 0.25 %)")
    if d > meta["max"]:
        raise _Bad(f"must be a fraction like 0.0025 (= 0.25 %), at most {meta['max']}; {d} would be {d * 100} %")
    return d


def bounded_duration(value: str, *, minimum: timedelta, maximum: timedelta) -> timedelta:
    """parse_duration plus a range; ValueError says which bound (for config keys and CLI options alike)."""
    td = parse_duration(value)
    if td < minimum:
        raise ValueError(f"must be at least {format_duration(minimum)}" if minimum else "must not be negative")
    if td > maximum:
        raise ValueError(f"must be at most {format_duration(maximum)}")
    return td


def _duration(value, meta, key, path) -> timedelta:
    if not isinstance(value, str):
        raise _Bad(f'must be a duration string like "30m", not {type(value).__name__}')
    try:
        return bounded_duration(value, minimum=meta["min"], maximum=meta["max"])
    except ValueError as e:
        raise _Bad(str(e)) from None


def _int(value, meta, key, path) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Bad(f"must be a whole number, not {type(value).__name__}")
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and value < lo:
        raise _Bad(f"must be at least {lo}")
    if hi is not None and value > hi:
        raise _Bad(f"must be at most {hi}")
    return value


def _str(value, meta, key, path) -> str:
    if not isinstance(value, str):
        raise _Bad(f"must be a string, not {type(value).__name__}")
    choices = meta.get("choices")
    if choices and value not in choices:
        raise _Bad(f"must be one of {', '.join(repr(c) for c in choices)}, not {value!r}")
    return value


def _bool(value, meta, key, path) -> bool:
    if not isinstance(value, bool):
        raise _Bad(f"must be true or false, not {type(value).__name__}")
    return value


def _strings(value, meta, key, path) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _Bad("must be a list of strings")
    return tuple(value)


def _market(value, meta, key, path) -> str:
    name = normalise_market(_str(value, meta, key, path))
    if not MARKET_RE.match(name):
        raise _Bad(f'{value!r} is not a Bitvavo EUR market name (like "BTC-EUR")')
    return name


def _markets(value, meta, key, path) -> tuple[str, ...]:
    out = []
    for v in _strings(value, meta, key, path):
        name = _market(v, meta, key, path)
        if name not in out:
            out.append(name)
    return tuple(out)


_PRICE = {"allow_zero": False, "max": Decimal("1000000000")}


def _prices(value, meta, key, path) -> dict:
    if not isinstance(value, dict):
        raise _Bad('must be a table of market = price, like { "BTC-EUR" = "60000" }')
    out = {}
    for market, price in value.items():
        name = market.strip().upper().replace("/", "-")
        if not MARKET_RE.match(name):
            raise ConfigError(f'{path}: {key}.{market}: not a Bitvavo EUR market name (like "BTC-EUR")')
        try:
            out[name] = _money(price, _PRICE, key, path)
        except _Bad as e:
            raise ConfigError(f"{path}: {key}.{market}: {e}") from None
    return out


def _ints(value, meta, key, path) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise _Bad("must be a list of whole numbers, like [123456789]")
    return tuple(dict.fromkeys(value))


CONVERTERS = {
    "money": _money,
    "fraction": _fraction,
    "duration": _duration,
    "int": _int,
    "str": _str,
    "bool": _bool,
    "strings": _strings,
    "ints": _ints,
    "market": _market,
    "markets": _markets,
    "prices": _prices,
}


# The smallest grace reconcile uses, whatever [exchange] reconcile_grace says:
# doctor lets the clock drift up to a quarter of the access window, and ccxt's
# throttle may hold a signed request back before it leaves (~0.6 s measured).
# Here, not in reconcile: loading a config (every command, `kill` too) must not import the exchange contract.
THROTTLE_ALLOWANCE = timedelta(seconds=2)


def grace_floor(access_window: timedelta) -> timedelta:
    return access_window / 4 + THROTTLE_ALLOWANCE


def _cross_checks(cfg: Config) -> None:
    p = cfg.path
    for name in cfg.advisors:
        if name not in KNOWN_ADVISORS and not re.match(r"^[\w.]+:\w+$", name):
            raise ConfigError(
                f"{p}: advisors: {name!r} is not a built-in advisor ({', '.join(KNOWN_ADVISORS)})"
                " or a 'module:function' path"
            )
    if cfg.rules.fast >= cfg.rules.slow:
        raise ConfigError(f"{p}: rules.fast: must be smaller than rules.slow ({cfg.rules.slow})")
    if cfg.dca.market is not None and cfg.dca.market not in cfg.risk.allowlist:  # stored normalised (_market)
        raise ConfigError(
            f"{p}: dca.market: {cfg.dca.market} is not in risk.allowlist"
            f" ({', '.join(cfg.risk.allowlist) or 'empty'}); add it there or pick an allowed market"
        )
    window = cfg.exchange.access_window.total_seconds()
    if not 0.1 <= window <= 60:
        raise ConfigError(f"{p}: exchange.access_window: must be between 100ms and 60s (Bitvavo's range)")
    if cfg.exchange.url is not None and not re.match(r"^https?://[^\s/]+(:\d+)?/?$", cfg.exchange.url):
        raise ConfigError(f'{p}: exchange.url: {cfg.exchange.url!r} is not a base URL like "http://127.0.0.1:8123"')
    if not re.match(r"^https?://[^\s/]+", cfg.llm.base_url):
        raise ConfigError(f"{p}: llm.base_url: {cfg.llm.base_url!r} is not an http(s) URL")
    try:
        _ = cfg.tz  # loads the zone: an unknown name raises here
    except (ValueError, KeyError, OSError):  # zoneinfo raises ZoneInfoNotFoundError (a KeyError) or ValueError
        raise ConfigError(
            f'{p}: timezone: {cfg.timezone!r} is not a time zone name like "Europe/Amsterdam" or "UTC"'
        ) from None
    floor = grace_floor(cfg.exchange.access_window)
    if cfg.exchange.reconcile_grace < floor:
        raise ConfigError(
            f"{p}: exchange.reconcile_grace: must be at least {format_duration(floor)} (a quarter of"
            f" exchange.access_window for clock skew, plus 2s for ccxt's throttle): a shorter grace could call an"
            " order absent that is still on its way"
        )
    if cfg.alerts.digest_at and not re.match(r"^([01]\d|2[0-3]):[0-5]\d$", cfg.alerts.digest_at):
        raise ConfigError(
            f'{p}: alerts.digest_at: {cfg.alerts.digest_at!r} is not a local time like "21:00"'
            ' ("" turns the daily digest off)'
        )
    for key, url in (
        ("alerts.heartbeat_url", cfg.alerts.heartbeat_url),
        ("alerts.heartbeat_fail_url", cfg.alerts.heartbeat_fail_url or None),  # "" = no failure ping
        ("telegram.api_url", cfg.telegram.api_url),
    ):
        if url is not None and not re.match(r"^https?://[^\s/]+\S*$", url):
            raise ConfigError(f"{p}: {key}: {url!r} is not an http(s) URL")
    _sellable_buys(cfg)
    _book_names(cfg)
    _scoreboard(cfg)


def _is_date(text: str) -> bool:
    import datetime as dt

    try:
        return len(text) == 10 and dt.date.fromisoformat(text) is not None
    except ValueError:
        return False


def _scoreboard(cfg: Config) -> None:
    """[scoreboard] shadow names advisors as `advisors` does, each once; a shadow trades nothing, so top_up
    (which only frees live positions) is not one."""
    seen: set[str] = set()
    for name in cfg.scoreboard.shadow:
        if name == "top_up" or (name not in KNOWN_ADVISORS and not re.match(r"^[\w.]+:\w+$", name)):
            shadows = [a for a in KNOWN_ADVISORS if a != "top_up"]
            raise ConfigError(
                f"{cfg.path}: scoreboard.shadow: {name!r} is not an advisor that can run in the shadows"
                f" ({', '.join(shadows)} or a 'module:function' path)"
            )
        if name in seen:
            raise ConfigError(f"{cfg.path}: scoreboard.shadow: {name!r} is listed twice")
        seen.add(name)
    cutoff = cfg.llm.knowledge_cutoff
    if cutoff is not None and not _is_date(cutoff):
        raise ConfigError(
            f'{cfg.path}: llm.knowledge_cutoff: {cutoff!r} is not a date like "2024-10-01" (the model\'s training cutoff)'
        )


def _book_names(cfg: Config) -> None:
    """rules.sell_from and exits.books name books: a built-in one or an advisor of `advisors` (tinybot.trade.book)."""
    known = list(BUILTIN_BOOKS) + [a for a in cfg.advisors if a not in BUILTIN_BOOKS and a not in KNOWN_ADVISORS]
    for key, names in (("rules.sell_from", cfg.rules.sell_from), ("exits.books", cfg.exits.books)):
        for name in names:
            if name not in known:
                raise ConfigError(
                    f"{cfg.path}: {key}: {name!r} is not a book; books are {', '.join(repr(k) for k in known)}"
                    " (an advisor's name, 'manual' for your own proposals, 'external' for orders tinybot did not propose)"
                )
    if "rules" in cfg.advisors and not cfg.rules.sell_from:
        raise ConfigError(f'{cfg.path}: rules.sell_from: empty: the rules advisor could never sell; use ["rules"]')


def _pct(share: Decimal) -> str:
    return f"{(share * 100).normalize():f} %"


def _sellable_buys(cfg: Config) -> None:
    """Every fixed buy size must leave a position the exchange lets tinybot sell again (tinybot.base.sizing)."""
    from . import sizing

    need = sizing.min_sellable_buy_eur(cfg)
    sizes = [("rules.buy_eur", cfg.rules.buy_eur)] if "rules" in cfg.advisors else []
    sizes += [("dca.buy_eur", cfg.dca.buy_eur)] if "dca" in cfg.advisors and cfg.dca.market else []
    for key, eur in sizes:
        if eur < need:
            raise ConfigError(
                f"{cfg.path}: {key}: €{eur} buys a position that could not be sold again: after the"
                f" {_pct(sizing.fee_rate(cfg))} fee it must be worth at least €{sizing.min_sellable_eur(cfg):.2f}"
                f" (the €{sizing.EXCHANGE_MINIMUM_EUR} minimum + risk.sellable_margin {_pct(cfg.risk.sellable_margin)});"
                f" set it to €{need} or more"
            )


def describe(cfg: Config) -> dict:
    """A JSON-friendly view of the effective config (no secrets: there are none in it)."""

    def plain(v):
        if isinstance(v, Decimal):
            return format(v, "f")
        if isinstance(v, timedelta):
            return format_duration(v)
        if isinstance(v, tuple):
            return list(v)
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    out = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if dataclasses.is_dataclass(v):
            out[f.name] = {g.name: plain(getattr(v, g.name)) for g in dataclasses.fields(v)}
        else:
            out[f.name] = plain(v)
    return out
