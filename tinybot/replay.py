"""`tinybot replay`: what would tinybot have done?  The real tick over stored candles.

Replay runs the real scheduler tick — reconcile → safety → expire → snapshot
→ advisors → proposals → approval → guards → executor → sync — in **live
mode** through the real ccxt adapter, against the Bitvavo simulator
(``tinybot.sim``) in this process on loopback, with a simulated clock and a
scratch database.  Nothing reaches the internet, the live database is only
read (candles), and no real key is ever read: every secret a replay asks for
is a throwaway key of the simulator (``ReplaySecrets``).

The simulator is the same one the demo, the tests and `tinybot sim` use,
with two changes made here (``ReplaySimulator``): its candles are the stored
ones, with their real timestamps (gaps stay gaps), and at each tick the
market price is the open of the candle starting then.  docs/REPLAY.md has the
semantics and why this, not the paper exchange, is the one code path with live.
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import shutil
import sqlite3
import tempfile
import tomllib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Callable

from .errors import TinybotError
from . import candles, clock, money
from .config import AlertsConfig, Config, from_dict
from .errors import ConfigError
from .secrets import Secrets
from .sim.accounts import SimAccount
from .sim.market import INTERVALS, MarketState, to_tick
from .sim.simulator import Simulator
from .sim.transport import InProcessSession
from .sim.wire import bad

REPLAY_KEY, REPLAY_SECRET = "replay-key", "replay-secret"  # the simulator's throwaway account
DEFAULT_SLIPPAGE = Decimal("0.0005")  # 0.05 % against the order, on top of the simulator's spread
LLM_MODES = ("record", "live", "off")  # --llm: answer from the LLM record / and call it on a miss / leave it out
KEEP_DAYS = 36_500  # retention must not prune the replay's own audit rows (simulated time moves fast)
SERIES_POINTS = 500  # equity/exposure points kept in the JSON
MAX_ERRORS_SHOWN = 5  # tick errors quoted in the summary (the count has them all)


class ReplayError(TinybotError):
    """Bad input for a replay (range, markets, candles, --set); the message says what to fix."""


# --- config ------------------------------------------------------------------------


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
        from .secrets import SECRET_NAMES

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


# The files replay writes, all inside its scratch folder (one it created, or an empty one given with --keep):
# never named like the live ones, so no command ever mistakes them for the bot's own (issue 20, item 2)
SCRATCH_CONFIG = "replay.toml"


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
        llm=dataclasses.replace(cfg.llm, base_url=llm_url) if llm_url else cfg.llm,
        exchange=dataclasses.replace(cfg.exchange, url=url, operator_id=cfg.exchange.operator_id or 1),
        scheduler=dataclasses.replace(cfg.scheduler, approval="auto", log_file="replay.log", keep_days=KEEP_DAYS),
        alerts=AlertsConfig(),
    )
    return ReplayConfig(**values)


# --- the simulated clock and exchange ----------------------------------------------------


class ReplayMarket(MarketState):
    """A simulator market serving its stored candles at their real times; buys and sells pay extra slippage.

    The price at a moment is the open of the stored candle that contains it (as at the candle's
    first instant), or in a gap the last close before it.
    """

    def __init__(self, name: str, interval: str, series: list[candles.Candle], slippage: Decimal, limits=None):
        super().__init__(name, INTERVALS[interval], 1, 7, None)
        self.slippage = slippage
        if limits is not None:
            self.tick, self.quantity_decimals = limits.tick_size, limits.quantity_decimals
            self.notional_decimals, self.min_base = limits.notional_decimals, limits.min_base
        else:
            self.tick, self.min_base = _tick_of(series), Decimal(0)
        self.series = series
        self.stamps = [c.timestamp_ms for c in series]
        self.rows = [(c.timestamp_ms, c.open, c.high, c.low, c.close, c.volume) for c in series]
        self.step_ms = INTERVALS[interval] * 1000
        self._aggregated: dict = {}

    def bid_ask(self):
        bid, ask = super().bid_ask()
        if self.slippage:
            bid = max(to_tick(bid * (1 - self.slippage), self.tick, ROUND_FLOOR), self.tick)
            ask = to_tick(ask * (1 + self.slippage), self.tick, ROUND_CEILING)
        return bid, ask

    def price_at(self, now_ms: int) -> Decimal | None:
        """The open of the candle that contains now, else (a gap) the last close before now."""
        i = bisect.bisect_right(self.stamps, now_ms) - 1
        if i < 0:
            return None
        c = self.series[i]
        return c.open if now_ms < c.timestamp_ms + self.step_ms else c.close

    def move_to(self, now_ms: int) -> Decimal | None:
        """The last price becomes the price at now_ms (if there is one yet); returns it."""
        p = self.price_at(now_ms)
        if p is not None:
            self.candles[-1] = [p, p, p, p, Decimal(0)]
            self.nonce += 1
        return p

    def candles_at(self, now_ms: int, interval: str | None = None) -> list:
        """Stored candles up to now (the current one only its open, as at its first instant), oldest first.

        At most the 1440 newest (of the interval asked for): Bitvavo's limit per request.
        """
        step = self.step_ms
        want = INTERVALS[interval] * 1000 if interval else step
        if want < step or want % step:
            raise bad(205, "interval parameter is invalid.")
        end = bisect.bisect_right(self.stamps, now_ms)
        rows = self.rows[max(0, end - (1440 if want == step else want // step)) : end]
        if rows and rows[-1][0] + step > now_ms:
            ts, o = rows[-1][0], rows[-1][1]
            rows[-1] = (ts, o, o, o, o, Decimal(0))
        if want == step:
            return rows
        # a coarser interval: whole buckets built once, the one still open from its base candles so far
        closed = self._coarse(want)
        bucket = now_ms // want * want
        i = bisect.bisect_left(closed[0], bucket)
        out = list(closed[1][max(0, i - 1440) : i])
        current = [r for r in rows if r[0] >= bucket]
        if current:
            out.append(
                (
                    bucket,
                    current[0][1],
                    max(r[2] for r in current),
                    min(r[3] for r in current),
                    current[-1][4],
                    sum((r[5] for r in current), Decimal(0)),
                )
            )
        return out

    def _coarse(self, want: int) -> tuple[list[int], list[tuple]]:
        if want not in self._aggregated:
            stamps, rows = [], []
            for ts, o, hi, lo, c, v in self.rows:
                b = ts // want * want
                if rows and rows[-1][0] == b:
                    _, o0, h0, l0, _c0, v0 = rows[-1]
                    rows[-1] = (b, o0, max(h0, hi), min(l0, lo), c, v0 + v)
                else:
                    stamps.append(b)
                    rows.append((b, o, hi, lo, c, v))
            self._aggregated[want] = (stamps, rows)
        return self._aggregated[want]


def _tick_of(series: list[candles.Candle]) -> Decimal:
    """A tick size that fits every stored price (when Bitvavo's own was not stored)."""
    decimals = 0
    for c in series[-2000:]:
        for p in (c.open, c.high, c.low, c.close):
            exp = p.normalize().as_tuple().exponent
            decimals = max(decimals, -exp if isinstance(exp, int) else 0)
    return Decimal(1).scaleb(-decimals)


class ReplaySimulator(Simulator):
    """The simulator, serving stored candles at their real times; the price at a tick is that candle's open."""

    def __init__(
        self,
        series: dict[str, list[candles.Candle]],
        data_interval: dict[str, str],
        limits: dict,
        eur: Decimal,
        sim_clock: clock.Simulated,
        slippage: Decimal,
    ):
        finest = min(data_interval.values(), key=lambda i: INTERVALS[i])
        super().__init__(
            accounts=[SimAccount(REPLAY_KEY, REPLAY_SECRET, frozenset({"view", "trade"}), {"EUR": eur})],
            markets=tuple(series),
            interval=finest,
            history=1,
            clock=sim_clock.seconds,
        )
        for m in series:
            self.markets[m] = ReplayMarket(m, data_interval[m], series[m], slippage, limits.get(m))

    def price_at(self, market: str, now_ms: int) -> Decimal | None:
        return self.markets[market].price_at(now_ms)

    def move_to(self, now_ms: int) -> dict[str, Decimal]:
        """Every market's price becomes the one at now_ms; returns those that have one."""
        with self.lock:
            moved = {m: state.move_to(now_ms) for m, state in self.markets.items()}
        return {m: p for m, p in moved.items() if p is not None}


def make_simulator(
    series: dict[str, list[candles.Candle]],
    data_interval: dict[str, str],
    limits: dict,
    eur: Decimal,
    sim_clock: clock.Simulated,
    slippage: Decimal,
) -> ReplaySimulator:
    return ReplaySimulator(series, data_interval, limits, eur, sim_clock, slippage)


# --- the LLM, from its record -------------------------------------------------------------


class RecordedLLM:
    """An OpenAI-compatible ``/v1/chat/completions`` on 127.0.0.1 for the replay's llm advisor.

    The advisor runs unchanged (prompt, budget, strict answer check) against this URL.  A prompt
    found in the LLM record (tinybot/llm_record.py, read from the live database) gets the recorded
    answer: nothing is called, nothing is spent.  Any other prompt gets a 404 — the advisor calls
    that "not billed" and proposes nothing — unless ``live`` (``--llm live``) forwards it to the
    configured provider within ``live.budget_eur``.
    """

    def __init__(self, recorded: dict, live: "LiveLLM | None" = None):
        import threading
        from http.server import BaseHTTPRequestHandler, HTTPServer

        from . import llm_record

        self.recorded, self.live = recorded, live
        self.from_record = self.not_in_record = 0
        self.models: set[str] = set()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw)
                    prompt = llm_record.canonical_prompt(body["messages"])
                except (ValueError, KeyError, TypeError):
                    return self._send(400, {"error": {"message": "not a chat completion request"}})
                found = outer.recorded.get(prompt)
                if found is not None:
                    outer.from_record += 1
                    outer.models.add(found.model)
                    return self._send(200, found.answer)
                if outer.live is not None:
                    status, answer = outer.live.forward(body)
                    return self._send(status, answer)
                outer.not_in_record += 1
                return self._send(
                    404, {"error": {"message": "no recorded answer for this prompt (tinybot replay --llm record)"}}
                )

            def _send(self, status: int, payload) -> None:
                data = (payload if isinstance(payload, str) else json.dumps(payload)).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def summary(self, mode: str) -> dict:
        live = self.live
        return {
            "mode": mode,
            "answers_from_record": self.from_record,
            "not_in_record": self.not_in_record,
            "recorded_models": sorted(self.models),
            "recorded_prompts": len(self.recorded),
            "live_calls": live.calls if live else 0,
            "live_refused_by_budget": live.refused if live else 0,
            "live_budget_eur": money.cents(live.budget_eur) if live else None,
            "spent_eur": money.cents(live.spent_eur) if live else "0.00",
        }


class LiveLLM:
    """``--llm live``: a prompt not in the record goes to the configured provider, with the user's key.

    Real money, spent now: the whole replay may spend at most ``budget_eur``, what is left of
    today's and this month's llm budget in the live database (read, never written) when the
    replay starts.  Each call first counts its worst case (llm_budget.worst_case_eur), then its
    real cost.  Answers are not written to the live record (replay never writes there).
    """

    def __init__(self, cfg: Config, budget_eur: Decimal):
        self.cfg, self.budget_eur = cfg, budget_eur
        self.key = cfg.secrets().get("TINYBOT_LLM_KEY")  # the real key, read only with --llm live
        self.spent_eur = Decimal(0)
        self.calls = self.refused = 0

    def forward(self, body: dict) -> tuple[int, object]:
        from . import llm_budget
        from .advisors import llm

        worst = llm_budget.worst_case_eur(llm.prompt_tokens_estimate(body), self.cfg.llm)
        if self.spent_eur + worst > self.budget_eur:
            self.refused += 1
            return 429, {
                "error": {
                    "message": f"tinybot replay --llm live: €{money.cents(self.budget_eur)} budget left"
                    f" for this replay, €{money.cents(self.spent_eur)} spent"
                }
            }
        body = dict(body, model=self.cfg.llm.model)
        try:
            data = llm.post_chat(self.cfg, body, self.key)
        except Exception as e:  # the advisor's own outcome: not sent / refused (not billed) / unknown
            if getattr(e, "kind", "unknown") == "unknown":
                self.spent_eur += worst  # maybe billed: count the worst case
            return 502, {"error": {"message": f"--llm live: {e}"}}
        self.calls += 1
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        tin, tout = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if isinstance(tin, int) and isinstance(tout, int):
            self.spent_eur += llm_budget.cost_eur(tin, tout, self.cfg.llm)
        else:
            self.spent_eur += worst
        return 200, data["_garbage"] if "_garbage" in data else data


def live_llm_budget(store: sqlite3.Connection, cfg: Config, now: datetime) -> Decimal:
    """What is left of today's and this month's llm budget in the live database, at the real time ``now``."""
    from . import llm_budget

    if not store.execute("SELECT 1 FROM sqlite_master WHERE name = 'gpt_usage_log'").fetchone():
        return min(cfg.llm.daily_budget_eur, cfg.llm.monthly_budget_eur)
    day, month = llm_budget.period_keys(now, cfg.tz)
    return max(
        Decimal(0),
        min(
            cfg.llm.daily_budget_eur - llm_budget.committed_eur(store, day=day),
            cfg.llm.monthly_budget_eur - llm_budget.committed_eur(store, month=month),
        ),
    )


# --- planning ---------------------------------------------------------------------------


@dataclass
class Plan:
    markets: tuple[str, ...]
    data_interval: dict[str, str]
    slots: list[datetime]
    start: datetime
    end: datetime
    warnings: list[str] = field(default_factory=list)
    explicit: bool = False  # the markets came from --markets


def choose_interval(store, market: str, want: str) -> str:
    have = candles.intervals_of(store, market)
    if not have:
        raise ReplayError(
            f"{market}: no candles stored; run `tinybot data fetch {market} --interval {want}"
            " --since 2025-01-01` (or `tinybot data import FILE.csv`)"
        )
    if want in have:
        return want
    fits = [
        i
        for i in have
        if candles.INTERVALS[i] < candles.INTERVALS[want] and candles.INTERVALS[want] % candles.INTERVALS[i] == 0
    ]
    if not fits:
        raise ReplayError(
            f"{market}: the advisors read {want} candles (rules.candle_interval) but the store has"
            f" only {', '.join(have)}; run `tinybot data fetch {market} --interval {want} --since …`"
            f" or replay with --set rules.candle_interval={have[0]}"
        )
    return fits[-1]  # the coarsest that builds `want`


def make_plan(store, cfg: Config, markets: tuple[str, ...], start: datetime | None, end: datetime | None) -> Plan:
    from .advisors import candle_limit

    want = cfg.rules.candle_interval
    interval = {m: choose_interval(store, m, want) for m in markets}
    firsts, lasts = [], []
    warnings = []
    for m in markets:
        r = store.execute(
            "SELECT MIN(ts_ms), MAX(ts_ms) FROM candles WHERE market = ? AND interval = ?", (m, interval[m])
        ).fetchone()
        firsts.append(r[0])
        lasts.append(r[1])
        cov = candles.coverage(store, m, interval[m])
        for (_, b1), (a2, _) in zip(cov, cov[1:]):
            warnings.append(
                f"{m}: no {interval[m]} data fetched from {candles.iso_ms(b1)} to {candles.iso_ms(a2)}"
                " (not a gap in trading: nobody downloaded it)"
            )
    finest = min(candles.INTERVALS[i] for i in interval.values())
    if cfg.scheduler.interval < timedelta(milliseconds=finest):
        warnings.append(
            f"ticks every {clock.format_duration(cfg.scheduler.interval)} on"
            f" {min(interval.values(), key=candles.INTERVALS.get)} candles:"
            " between two candle opens the price is not known and stays at the open;"
            " --set scheduler.interval="
            + min(interval.values(), key=candles.INTERVALS.get)
            + " ticks once per candle (faster)"
        )
    warm = candle_limit(cfg) * candles.INTERVALS[want]
    data_start = clock.from_ms(max(firsts) + warm)
    data_end = clock.from_ms(min(lasts) + 1)  # the last tick can be at the newest candle's open
    start = max(start, clock.from_ms(max(firsts))) if start else data_start
    end = min(end, data_end) if end else data_end
    step = cfg.scheduler.interval
    from .liveness import slot_of

    first = slot_of(start, step)
    if first < start:
        first += step
    slots = []
    t = first
    while t < end:
        slots.append(t)
        t += step
    if not slots:
        raise ReplayError(
            f"empty range: no {clock.format_duration(step)} tick between {_day(start)} and"
            f" {_day(end)} with candles stored for {', '.join(markets)}"
            f" (stored: {_day(clock.from_ms(max(firsts)))} to {_day(clock.from_ms(min(lasts)))})"
        )
    return Plan(markets, interval, slots, start, end, warnings)


def _day(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%MZ")


def replay_markets(cfg: Config, markets: tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
    from .advisors import watched_markets
    from .markets import MARKET_RE
    from .markets import normalise_market

    if markets:
        out = []
        for raw in markets:
            for part in raw.split(","):
                m = normalise_market(part)
                if not MARKET_RE.match(m):
                    raise ReplayError(f"--markets: {part!r} is not a Bitvavo EUR market name (like BTC-EUR)")
                if m not in out:
                    out.append(m)
        return tuple(out)
    found = watched_markets(cfg)
    if not found:
        raise ReplayError(
            f"no markets to replay: risk.allowlist in {cfg.path} is empty; add markets there or pass --markets BTC-EUR"
        )
    return tuple(found)


def open_store(db_path: Path) -> sqlite3.Connection:
    """The live database, read-only: replay reads candles from it and writes nothing to it."""
    if not Path(db_path).exists():
        raise ReplayError(
            f"no database at {db_path}: run `tinybot init`, then `tinybot data fetch` or `tinybot data import`"
        )
    conn = sqlite3.connect(f"file:{Path(db_path).resolve()}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'candles'").fetchone():
        conn.close()
        raise ReplayError(f"{db_path} has no candle store yet: run `tinybot data fetch` or `tinybot data import`")
    return conn


# --- the run ------------------------------------------------------------------------------


@dataclass
class TickPoint:
    time: datetime
    equity: Decimal
    exposure: Decimal
    errors: tuple[str, ...] = ()  # what the tick reported as errors (an exchange read that failed, …)


def replay(
    cfg: Config,
    store: sqlite3.Connection,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    markets: tuple[str, ...] | list[str] | None = None,
    eur: Decimal | None = None,
    slippage: Decimal = DEFAULT_SLIPPAGE,
    keep: Path | None = None,
    llm: str = "record",
    on_plan: Callable[[int], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Replay the stored candles through the real tick; return the summary (JSON-ready).

    ``llm``: "record" answers the llm advisor from the LLM record (else it proposes nothing),
    "live" also calls the provider for prompts not in the record (within the budget left today),
    "off" leaves the advisor out.
    """
    eur = cfg.paper.starting_eur if eur is None else Decimal(eur)
    if eur <= 0:
        raise ReplayError("--eur must be more than 0")
    if llm not in LLM_MODES:
        raise ReplayError(f"--llm must be one of {', '.join(LLM_MODES)}, not {llm!r}")
    names = replay_markets(cfg, markets)
    try:
        plan = make_plan(store, cfg, names, start, end)
    except ReplayError as e:
        if markets or "no candles stored" not in str(e):
            raise
        raise ReplayError(f"{e}; or replay only the markets you have with --markets") from None
    plan.explicit = bool(markets)
    # candles the first tick may look back at, up to the end
    from .advisors import candle_limit

    lookback = (candle_limit(cfg) + 2) * candles.INTERVALS[cfg.rules.candle_interval]
    lo, hi = clock.to_ms(plan.slots[0]) - lookback, clock.to_ms(plan.end) + 86_400_000
    series = {m: candles.load(store, m, plan.data_interval[m], lo, hi) for m in names}
    limits = {m: candles.market_info(store, m) for m in names}

    llm_answers = None  # (the LLM record, --llm live's forwarder or None) when the llm advisor runs
    if "llm" in cfg.advisors and llm != "off":
        from . import llm_record

        live = None
        if llm == "live":
            from .advisors.llm import disabled_reason

            why = disabled_reason(cfg)  # the same checks as live: https or loopback, a key where needed
            if why:
                raise ReplayError(f"--llm live: {why}")
            live = LiveLLM(cfg, live_llm_budget(store, cfg, clock.now()))  # the real clock: today's budget
        llm_answers = (llm_record.load(store), live)

    scratch = scratch_folder(keep)
    sim_clock = clock.Simulated(plan.slots[0])
    sim = make_simulator(series, plan.data_interval, limits, eur, sim_clock, slippage)
    conn = recorded_llm = None
    try:
        if llm_answers is not None:
            recorded_llm = RecordedLLM(*llm_answers)
        points = _run(
            cfg, plan, sim, sim_clock, scratch, on_plan, progress, recorded_llm.base_url if recorded_llm else None
        )
        conn = sqlite3.connect(scratch / "replay.db")
        conn.row_factory = sqlite3.Row
        if keep is not None:  # `tinybot --config DIR/replay.toml why N` (history, executions, ...) then reads it
            (scratch / SCRATCH_CONFIG).write_text(
                "# Written by `tinybot replay --keep`: its scratch database, to look around with\n"
                f"# tinybot --config {scratch / SCRATCH_CONFIG} why N   (or proposals, executions, history)\n"
                'mode = "paper"\ndb = "replay.db"\n',
                encoding="utf-8",
            )
        summary = summarize(conn, cfg, plan, points, sim, eur, slippage, scratch if keep else None)
        if recorded_llm is not None:
            summary["llm"] = recorded_llm.summary(llm)
        else:
            summary["advisors"] = [a for a in cfg.advisors if a != "llm"]
            summary["skipped_advisors"] = ["llm"] if "llm" in cfg.advisors else []
            summary["llm"] = {"mode": llm if "llm" in cfg.advisors else "not configured"}
        return summary
    finally:
        sim.close()
        if recorded_llm is not None:
            recorded_llm.close()
        if conn is not None:
            conn.close()
        if keep is None:
            shutil.rmtree(scratch, ignore_errors=True)


def _run(
    cfg: Config,
    plan: Plan,
    sim,
    sim_clock: clock.Simulated,
    scratch: Path,
    on_plan,
    progress,
    llm_url: str | None = None,
) -> list[TickPoint]:
    """One real scheduler tick per slot, on the simulated clock, against the simulator on loopback."""
    from . import db
    from .loop import logfile, scheduler
    from .exchange import read_only
    from .executor import trading_exchange

    server = sim.serve()
    points: list[TickPoint] = []
    with clock.simulated(sim_clock):
        rcfg = scratch_config(cfg, scratch, server.url, plan.markets if plan.explicit else None, llm_url)
        conn = db.open_db(rcfg.db_path)
        conn.execute("PRAGMA synchronous = OFF")  # a scratch database: durability buys nothing here
        log_handler = logfile.attach_log_file(rcfg)
        try:
            ro, trading = read_only(rcfg), trading_exchange(rcfg)
            session = InProcessSession(sim)
            for client in (ro, trading):  # every key's requests: in-process, signed on the simulated clock
                client.route_requests(session, milliseconds=sim_clock.ms)
            sched = scheduler.Scheduler(rcfg, conn, echo=lambda line: None, read_only=ro, trading=trading)
            if on_plan:
                on_plan(len(plan.slots))
            for slot in plan.slots:
                sim_clock.t = slot
                prices = sim.move_to(clock.to_ms(slot))
                report = sched.tick(slot)
                points.append(_point(sim, slot, prices, tuple(report.errors)))
                if progress:
                    progress(1)
        finally:
            logfile.detach_log_file(log_handler)
            conn.close()
            server.close()
    return points


def _point(sim, slot: datetime, prices: dict[str, Decimal], errors: tuple[str, ...] = ()) -> TickPoint:
    bal = sim.balance(REPLAY_KEY)
    exposure = sum((bal.get(m.split("-")[0], Decimal(0)) * p for m, p in prices.items()), Decimal(0))
    return TickPoint(slot, bal.get("EUR", Decimal(0)) + exposure, exposure, errors)


# --- the summary --------------------------------------------------------------------------


def summarize(
    conn, cfg: Config, plan: Plan, points: list[TickPoint], sim, eur: Decimal, slippage: Decimal, kept: Path | None
) -> dict:
    """The replay's figures: P/L, fees, LLM cost, trades and the benchmarks from the book (tinybot.book) at the
    simulator's prices of the last tick; drawdown and exposure from the simulated account, tick by tick."""
    from .book import figures

    last = plan.slots[-1]
    final = _sim_prices(sim, last)
    money_now = figures.summary(conn, cfg, prices=final, until=last)
    trades = [
        {
            "time": t.fill.at,
            "market": t.fill.market,
            "side": t.fill.side,
            "amount": money.plain(t.fill.amount),
            "price": money.plain(t.fill.price),
            "eur": money.cents(t.fill.quote),
            "fee": money.plain(t.fill.fee),
            "fee_currency": t.fill.fee_currency,
            "fee_eur": money.cents(t.fill.fee_eur),
            "proposal_id": t.proposal_id,
            "source": t.source,
            "advisor": t.book,
            "reason": t.reason,
        }
        for t in figures.trades(conn, until=last)
    ]
    blocks = {
        r["reason_code"]: r["n"]
        for r in conn.execute(
            "SELECT reason_code, COUNT(*) AS n FROM guard_decisions WHERE verdict = 'block' GROUP BY reason_code"
            " ORDER BY n DESC, reason_code"
        )
    }
    by_source = {
        r["source"]: r["n"]
        for r in conn.execute("SELECT source, COUNT(*) AS n FROM proposals GROUP BY source ORDER BY source")
    }
    kill = conn.execute("SELECT trading_enabled, reason, changed_at FROM kill_switch WHERE id = 1").fetchone()
    failed_ticks = conn.execute("SELECT COUNT(*) FROM ticks WHERE status = 'failed'").fetchone()[0]

    total = money_now.total
    final_equity = eur + total.realised_eur + total.unrealised_eur  # the starting money and what trading made
    peak, max_dd, max_dd_eur = Decimal(0), Decimal(0), Decimal(0)
    for p in points:
        peak = max(peak, p.equity)
        if peak > 0 and peak - p.equity > max_dd_eur:
            max_dd_eur = peak - p.equity
            max_dd = (peak - p.equity) / peak
    exposures = [p.exposure for p in points]
    in_market = sum(1 for x in exposures if x > 0)
    stride = max(1, len(points) // SERIES_POINTS)
    series = [
        {"time": clock.to_iso(p.time), "equity": money.cents(p.equity), "exposure": money.cents(p.exposure)}
        for p in points[::stride]
    ]
    pnl = total.net_eur
    hold = benchmark_hold(sim, plan, eur)
    dca = benchmark_dca(sim, plan, cfg, eur)
    return {
        "from": clock.to_iso(plan.slots[0]),
        "to": clock.to_iso(plan.slots[-1]),
        "ticks": len(plan.slots),
        "tick_interval": clock.format_duration(cfg.scheduler.interval),
        "markets": list(plan.markets),
        "candle_interval": plan.data_interval,
        "advisors": list(cfg.advisors),
        "skipped_advisors": [],
        "approval": "auto"
        + (" (config says manual; replay approves as auto would)" if cfg.scheduler.approval == "manual" else ""),
        "slippage": money.plain(slippage),
        "starting_eur": money.cents(eur),
        "final_equity_eur": money.cents(final_equity),
        "pnl_eur": money.cents(pnl),
        "pnl_pct": str((pnl / eur * 100).quantize(Decimal("0.01"))),
        "realised_eur": money.cents(total.realised_eur),
        "unrealised_eur": money.cents(total.unrealised_eur),
        "fees_eur": money.cents(total.fees_eur),
        "llm_cost_eur": money.cents(total.llm_cost_eur),
        "by_advisor": {b: money.cents(f.net_eur) for b, f in money_now.by_book.items()},
        "max_drawdown_eur": money.cents(max_dd_eur),
        "max_drawdown_pct": str((max_dd * 100).quantize(Decimal("0.01"))),
        "max_exposure_eur": money.cents(max(exposures, default=Decimal(0))),
        "time_in_market_pct": str((Decimal(in_market * 100) / max(len(points), 1)).quantize(Decimal("0.1"))),
        "proposals": sum(by_source.values()),
        "proposals_by_source": by_source,
        "orders": len({t["proposal_id"] for t in trades}),
        "trades": trades,
        "blocks": blocks,
        "kill_switch": {
            "trading_enabled": bool(kill["trading_enabled"]),
            "reason": kill["reason"],
            "changed_at": kill["changed_at"],
        },
        "failed_ticks": failed_ticks,
        # a tick that reported errors decided on less than a live tick would have seen (a lookup or read
        # refused): a replay is only as good as this is small; the first few say what went wrong
        "ticks_with_errors": sum(1 for p in points if p.errors),
        "tick_errors": [f"{clock.to_iso(p.time)}: {err}" for p in points for err in p.errors][:MAX_ERRORS_SHOWN],
        "benchmarks": {"hold": hold, "dca": dca},
        "series": series,
        "warnings": plan.warnings,
        "scratch_dir": str(kept) if kept else None,
    }


def _sim_prices(sim, at: datetime) -> dict:
    """The simulator's bid and ask per market at a moment (its price then, the spread and slippage around it)."""
    from .book import valuation

    sim.move_to(clock.to_ms(at))
    out = {}
    for m, state in sim.markets.items():
        if sim.price_at(m, clock.to_ms(at)) is None:
            continue
        bid, ask = state.bid_ask()
        out[m] = valuation.Price(bid, ask, sim.price_at(m, clock.to_ms(at)), clock.to_iso(at))
    return out


def _sim_price_at(sim):
    def price_at(market: str, when: datetime):
        return _sim_prices(sim, when).get(market)

    return price_at


def _benchmark(sim, plan: Plan, eur: Decimal, b) -> dict:
    """A benchmarks.Benchmark valued at the simulator's bids of the last tick, in the summary's shape."""
    bids = {m: p.bid for m, p in _sim_prices(sim, plan.slots[-1]).items()}
    pnl = b.pnl_at(plan.slots[-1], bids) if b is not None else Decimal(0)
    pnl = pnl if pnl is not None else Decimal(0)
    return {
        "title": b.title if b is not None else "no benchmark: the money buys less than the exchange minimum",
        "final_equity_eur": money.cents(eur + pnl),
        "pnl_eur": money.cents(pnl),
        "spent_eur": money.cents(b.spent_eur if b is not None else Decimal(0)),
        "buys": len(b.buys) if b is not None else 0,
        "eur_per_buy": money.cents(b.buys[0].eur if b is not None and b.buys else Decimal(0)),
        "markets": b.markets if b is not None else [],
    }


def _bench_args(sim, plan: Plan) -> dict:
    return {
        "fee_rate": sim.taker_fee,
        "decimals": {m: sim.markets[m].quantity_decimals for m in plan.markets},
    }


def benchmark_hold(sim, plan: Plan, eur: Decimal) -> dict:
    """Holding (tinybot.book.holding): the starting euros split over the markets, bought at the first tick, held."""
    from .book import benchmarks

    b = benchmarks.holding(eur, list(plan.markets), plan.slots[0], _sim_price_at(sim), **_bench_args(sim, plan))
    return _benchmark(sim, plan, eur, b)


def benchmark_dca(sim, plan: Plan, cfg: Config, eur: Decimal) -> dict:
    """DCA (tinybot.book.dca): the same euros in equal buys spread over the period (every dca.every at most, each
    part at least €5), split over the markets."""
    from .book import benchmarks

    b = benchmarks.dca(
        eur,
        list(plan.markets),
        plan.slots[0],
        plan.slots[-1],
        cfg.dca.every,
        _sim_price_at(sim),
        **_bench_args(sim, plan),
    )
    return _benchmark(sim, plan, eur, b)


# --- sweeps ---------------------------------------------------------------------------------


def expand_sets(sets: list[str] | tuple[str, ...]) -> list[list[str]]:
    """``rules.fast=8,12`` ``rules.slow=26,50`` → the grid of plain --set lists (a TOML value is one value)."""
    axes: list[list[str]] = []
    for item in sets:
        key, eq, value = item.partition("=")
        if eq and "," in value and isinstance(parse_value(value.strip()), str):
            axes.append([f"{key}={v.strip()}" for v in value.split(",") if v.strip()])
        else:
            axes.append([item])
    grid: list[list[str]] = [[]]
    for axis in axes:
        grid = [g + [v] for g in grid for v in axis]
    return grid


def _sweep_one(args) -> dict:
    path, sets, kw = args
    from .config import load

    try:
        cfg = apply_sets(load(path), sets)
        store = open_store(cfg.db_path)
        try:
            s = replay(cfg, store, **kw)
        finally:
            store.close()
    except (ReplayError, candles.CandleError, ConfigError) as e:
        return {"sets": sets, "error": str(e)}
    keep = (
        "ticks",
        "final_equity_eur",
        "pnl_eur",
        "pnl_pct",
        "fees_eur",
        "max_drawdown_pct",
        "proposals",
        "blocks",
        "benchmarks",
        "from",
        "to",
        "kill_switch",
    )
    return {"sets": sets, "trades": len(s["trades"]), **{k: s[k] for k in keep}}


def sweep(
    cfg: Config,
    grid: list[list[str]],
    *,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
    **kw,
) -> list[dict]:
    """Run every combination in its own process (the clock is per process), best net P/L first."""
    import os
    from concurrent.futures import ProcessPoolExecutor

    for sets in grid:  # bad keys fail before anything runs; combinations the config refuses are reported
        try:
            apply_sets(cfg, sets)
        except ReplayError as e:
            if "unknown key" in str(e) or "write it as key=value" in str(e):
                raise
    workers = max(1, min(workers or os.cpu_count() or 1, len(grid)))
    jobs = [(str(cfg.path), sets, kw) for sets in grid]
    results = []
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for r in pool.map(_sweep_one, jobs):
            results.append(r)
            if progress:
                progress(1)
    ok = sorted((r for r in results if "error" not in r), key=lambda r: Decimal(r["pnl_eur"]), reverse=True)
    return ok + [r for r in results if "error" in r]
