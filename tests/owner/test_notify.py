"""Alerts: delivered through apprise's JSON notifier to a local HTTP endpoint; deduped, capped, redacted, never raising."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest

from helpers.receiver import Receiver
from freezegun import freeze_time

from tinybot.base import clock, config, secrets
from tinybot.store import db
from tinybot.trade import killswitch, ledger
from tinybot.owner import notify

SECRET_TOKEN = "tok-SECRET-9f8e7d6c5b4a"
READ_SECRET = "read-SECRET-0a1b2c3d"


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in secrets.SECRET_NAMES + ("TINYBOT_CONFIG",):
        monkeypatch.delenv(name, raising=False)


def make_cfg(tmp_path, toml: str = "", secrets: str | None = None):
    path = tmp_path / "bot.toml"
    path.write_text(toml, encoding="utf-8")
    if secrets is not None:
        s = tmp_path / "secrets.env"
        s.write_text(secrets, encoding="utf-8")
        s.chmod(0o600)
    return config.load(path)


@pytest.fixture
def setup(tmp_path, receiver):
    # the token-bearing URL lives in the secrets file, as bot.toml tells people to do
    cfg = make_cfg(
        tmp_path,
        '[alerts]\nmin_interval = "15m"\n',
        f"TINYBOT_ALERT_URLS={receiver.url}?token={SECRET_TOKEN}\nTINYBOT_READ_SECRET={READ_SECRET}\n"
        "TINYBOT_READ_KEY=read-key-1234\n",
    )
    conn = db.open_db(cfg.db_path)
    return cfg, conn


def test_alert_is_delivered_through_apprise_json(setup, receiver):
    cfg, conn = setup
    sent = notify.Notifier(cfg, conn).alert("tick_failed", "tick 12:00 failed: boom", severity="error")
    assert sent.delivered
    assert len(receiver.messages) == 1
    msg = receiver.messages[0]
    assert msg["title"] == "tinybot: tick failed"
    assert msg["message"] == "tick 12:00 failed: boom"
    assert msg["type"] == "failure"
    assert conn.execute("SELECT status FROM alert_log").fetchone()[0] == "sent"


def test_same_key_is_sent_once_per_min_interval(setup, receiver):
    cfg, conn = setup
    with freeze_time("2026-03-01 12:00:00") as frozen:
        n = notify.Notifier(cfg, conn)
        assert n.alert("exchange_outage", "Bitvavo unreachable", key="exchange_outage").delivered
        frozen.tick(timedelta(minutes=14, seconds=59))
        assert n.alert("exchange_outage", "Bitvavo still unreachable", key="exchange_outage").status == "suppressed"
        # a second process (another Notifier on another connection) is deduped by the same table
        other = notify.Notifier(cfg, db.connect(cfg.db_path))
        assert other.alert("exchange_outage", "again", key="exchange_outage").status == "suppressed"
        frozen.tick(timedelta(seconds=2))
        assert n.alert("exchange_outage", "Bitvavo unreachable for 15m", key="exchange_outage").delivered
    assert [m["message"] for m in receiver.messages] == ["Bitvavo unreachable", "Bitvavo unreachable for 15m"]


def test_hourly_cap_spares_kill_switch_alerts(setup, receiver):
    cfg, conn = setup
    with freeze_time("2026-03-01 12:00:00") as frozen:
        n = notify.Notifier(cfg, conn)
        for i in range(notify.MAX_PER_HOUR):
            assert n.alert("order", f"order {i}").delivered
        assert n.alert("order", "one too many").status == "suppressed"
        assert n.alert("kill_switch", "trading disabled by auto: x").delivered
        frozen.tick(timedelta(hours=1, seconds=1))
        assert n.alert("order", "next hour").delivered
    assert len(receiver.messages) == notify.MAX_PER_HOUR + 2


def test_hourly_cap_spares_the_alerts_that_say_the_bot_stopped(setup, receiver):
    cfg, conn = setup
    with freeze_time("2026-03-01 12:00:00"):
        n = notify.Notifier(cfg, conn)
        for i in range(notify.MAX_PER_HOUR):
            n.alert("order", f"order {i}")
        assert n.alert("order", "one too many").status == "suppressed"
        for kind in ("bot_stopped", "bot_died", "start_refused"):
            assert n.alert(kind, f"{kind}: the bot is not trading").delivered, kind


def test_undeliverable_alert_is_logged_and_never_raises(setup, receiver, caplog):
    cfg, conn = setup
    receiver.fail = True
    with caplog.at_level(logging.WARNING, logger="tinybot.notify"):
        sent = notify.Notifier(cfg, conn).alert("tick_failed", "boom")
    assert sent.status == "failed"
    assert "NOT delivered" in caplog.text
    assert conn.execute("SELECT status FROM alert_log").fetchone()[0] == "failed"


def test_nothing_listening_and_broken_apprise_do_not_raise(tmp_path, monkeypatch):
    cfg = make_cfg(tmp_path, '[alerts]\nurls = ["json://127.0.0.1:9/"]\n')
    conn = db.open_db(cfg.db_path)
    assert notify.Notifier(cfg, conn).alert("x", "nobody listens").status == "failed"

    import apprise

    def explode(*a, **k):
        raise RuntimeError("plugin bug")

    monkeypatch.setattr(apprise.Apprise, "notify", explode)
    sent = notify.Notifier(cfg, conn).alert("y", "apprise explodes")
    assert sent.status == "failed" and "plugin bug" in sent.detail


def test_no_urls_is_recorded_not_raised(tmp_path):
    cfg = make_cfg(tmp_path)
    conn = db.open_db(cfg.db_path)
    assert notify.Notifier(cfg, conn).alert("x", "hello").status == "unconfigured"


def test_events_become_alerts_once(setup, receiver):
    cfg, conn = setup
    n = notify.Notifier(cfg, conn)
    with db.transaction(conn):
        ledger.event(conn, "reconciled", "old history is not replayed")
    assert n.drain_events() == 0  # first drain only sets the cursor
    killswitch.set_enabled(conn, False, "manual kill", by="cli")
    with db.transaction(conn):
        ledger.event(conn, "surprise_order", "order X carries clientOrderId Y", severity="error")
        ledger.event(conn, "execution_unknown", "execution 3: ambiguous: timeout", severity="warning")
    assert n.drain_events() == 3
    assert n.drain_events() == 0
    titles = [m["title"] for m in receiver.messages]
    assert titles == ["tinybot: kill switch", "tinybot: surprise order", "tinybot: execution unknown"]
    assert "trading disabled by cli: manual kill" in receiver.messages[0]["message"]


def test_guard_blocks_are_summarised_not_one_per_tick(setup, receiver):
    cfg, conn = setup
    conn.execute("PRAGMA foreign_keys = OFF")  # guard rows without proposals keep this test small

    def block(code):
        with db.transaction(conn):
            conn.execute(
                "INSERT INTO guard_decisions (proposal_id, stage, guard, verdict, reason_code, decided_at)"
                " VALUES (1, 'commit', 'g', 'block', ?, ?)",
                (code, clock.now_iso()),
            )

    with freeze_time("2026-03-01 12:00:00") as frozen:
        n = notify.Notifier(cfg, conn)
        assert n.summarise_blocks() is None  # sets the cursor
        for _ in range(3):
            block("cooldown_active")
            block("daily_cap")
            block("cooldown_active")
            n.summarise_blocks()
            frozen.tick(timedelta(minutes=1))
        frozen.tick(timedelta(minutes=15))
        block("daily_cap")
        n.summarise_blocks()
    assert len(receiver.messages) == 2
    assert receiver.messages[0]["message"].startswith(
        "1 proposal(s) blocked by guards: cooldown_active ×2, daily_cap ×1"
    )
    assert "cooldown_active ×4, daily_cap ×3" in receiver.messages[1]["message"]


def test_execution_alerts(setup, receiver):
    from tinybot.trade.executor import Result

    cfg, conn = setup
    n = notify.Notifier(cfg, conn)
    assert n.execution(Result(1, 1, "blocked", "cooldown", "c", None, False)) is None
    assert n.execution(Result(2, 2, "filled", "", "c2", "O-2", True)).delivered
    assert receiver.messages[0]["message"] == "order filled: proposal 2 (execution 2), order O-2"


def test_alerts_and_logs_never_carry_secret_values(setup, receiver, tmp_path):
    cfg, conn = setup
    log_path = tmp_path / "tinybot.log"
    handler = logging.FileHandler(log_path)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    notify.install_redaction(cfg, logging.getLogger())  # no handlers yet on root: nothing happens
    handler.addFilter(notify.RedactingFilter(cfg))
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.DEBUG)
    try:
        n = notify.Notifier(cfg, conn)
        n.alert("tick_failed", f"ccxt said: bad signature for secret {READ_SECRET}", severity="error")
        logging.getLogger("tinybot.scheduler").error("request with secret %s failed", READ_SECRET)
        try:
            raise ValueError(f"leaked {READ_SECRET} in a traceback")
        except ValueError:
            logging.getLogger("tinybot.scheduler").exception("tick failed")
        receiver.fail = True  # apprise logs its failure (with the URL) through the same handler
        n.alert("tick_failed", "second")
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()
    logged = log_path.read_text()
    assert notify.REDACTED in logged
    stored = json.dumps([dict(r) for r in conn.execute("SELECT * FROM alert_log")])
    for secret in (SECRET_TOKEN, READ_SECRET, "read-key-1234"):
        assert secret not in logged
        assert secret not in json.dumps(receiver.messages)
        assert secret not in stored
    assert receiver.messages[0]["message"] == f"ccxt said: bad signature for secret {notify.REDACTED}"


def test_importing_notify_does_not_import_apprise():
    import subprocess
    import sys

    code = (
        "import sys, tinybot.owner.notify, tinybot.trade.safety; print('apprise' in sys.modules, 'ccxt' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


# --- issue 23 item 6: priorities, the held-back count, [alerts] fills ----------------------------------


class _Result:
    def __init__(self, state, eid, reason="", sent=True):
        self.state, self.execution_id, self.proposal_id, self.reason = state, eid, eid, reason
        self.exchange_order_id, self.sent = f"o{eid}", sent


def test_routine_fills_never_use_up_the_budget_of_an_unknown_order_or_a_key_problem(setup, receiver):
    cfg, conn = setup
    with freeze_time("2026-03-01 12:00:00"):
        n = notify.Notifier(cfg, conn)
        for i in range(notify.MAX_PER_HOUR + 3):
            n.execution(_Result("filled", i))
        assert n.execution(_Result("unknown", 100, "timeout")).delivered
        assert n.execution(_Result("failed", 101, "Bitvavo: key does not allow trading (errorCode 310)")).delivered
        for kind in ("exchange_outage", "surprise_order", "fill_conflict", "restore_in_doubt", "execution_overdue"):
            assert n.alert(kind, f"{kind} now").delivered, kind
        assert n.alert("tick_failed", "AuthenticationError: bad key", severity="error").delivered
        assert n.alert("guard_blocks", "2 blocked", severity="info").status == "suppressed"
    texts = [m["message"] for m in receiver.messages]
    assert any(t.startswith("order outcome unknown: proposal 100") for t in texts)
    kinds = [k for (k,) in conn.execute("SELECT kind FROM alert_log WHERE status = 'sent' AND id > 20")]
    assert "execution_unknown" in kinds and "key_problem" in kinds


def test_a_held_back_routine_alert_is_counted_in_the_next_one_sent(setup, receiver):
    cfg, conn = setup
    with freeze_time("2026-03-01 12:00:00") as frozen:
        n = notify.Notifier(cfg, conn)
        for i in range(notify.MAX_PER_HOUR + 3):
            n.alert("order", f"order {i}", severity="info")
        assert n.alert("kill_switch", "trading disabled").delivered
        frozen.tick(timedelta(hours=1, seconds=1))
        assert n.alert("order", "next hour", severity="info").delivered
    texts = [m["message"] for m in receiver.messages]
    assert texts[-2] == (
        "trading disabled\n(3 routine alert(s) held back by the hourly limit since 12:00 UTC:"
        " `tinybot status` and the log have them)"
    )
    assert texts[-1] == "next hour"  # counted once


@pytest.mark.parametrize("fills, alerted", [("each", True), ("digest", False), ("off", False)])
def test_alerts_fills_setting_decides_whether_a_fill_alerts(tmp_path, receiver, fills, alerted):
    cfg = make_cfg(tmp_path, f'[alerts]\nurls = ["{receiver.url}"]\nfills = "{fills}"\n')
    conn = db.open_db(cfg.db_path)
    n = notify.Notifier(cfg, conn)
    assert (n.execution(_Result("filled", 1)) is not None) is alerted
    assert n.execution(_Result("unknown", 2, "timeout")).delivered  # never affected by the setting


def test_alerts_fills_is_validated(tmp_path):
    with pytest.raises(config.ConfigError, match=r"alerts\.fills"):
        make_cfg(tmp_path, '[alerts]\nfills = "sometimes"\n')
