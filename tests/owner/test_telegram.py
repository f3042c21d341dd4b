"""The owner's phone (tinybot.owner.telegram) against a local fake Bot API (tests/helpers/fake_telegram.py), real SQLite."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
from datetime import timedelta

import pytest
from freezegun import freeze_time

from helpers import ROOT
from helpers.fake_telegram import FakeTelegram
from helpers.configs import paper_config_text, paper_exchange
from tinybot.base import clock, config
from tinybot.store import db
from tinybot.trade import executor, guards, killswitch, proposals
from tinybot.owner.telegram.api import TOKEN_NAME, BotApi, TelegramError, enabled, read_token, recent_chats
from tinybot.owner.telegram.commands import HELP, RESUME_TTL, fingerprint
from tinybot.owner.telegram.poller import Background, Poller, run_loop
from tinybot.base.errors import ConfigError

OWNER, STRANGER = 111, 222


@pytest.fixture
def fake():
    with FakeTelegram() as f:
        yield f


@pytest.fixture
def make(fake, write_config, monkeypatch):
    """make(approval=..., allow_resume=..., chat_ids=...) -> (cfg, conn, poller), token in the environment."""
    opened = []

    def build(*, approval="manual", allow_resume=False, chat_ids=f"[{OWNER}]", poll_timeout="0s", extra=""):
        text = (
            paper_config_text() + f'[scheduler]\napproval = "{approval}"\n'
            f'[telegram]\nchat_ids = {chat_ids}\napi_url = "{fake.url}"\n'
            f'allow_resume = {"true" if allow_resume else "false"}\npoll_timeout = "{poll_timeout}"\n' + extra
        )
        cfg = write_config(text)
        conn = db.open_db(cfg.db_path)
        monkeypatch.setenv(TOKEN_NAME, fake.token)
        poller = Poller(cfg, conn)
        opened.append((poller, conn))
        return cfg, conn, poller

    yield build
    for poller, conn in opened:
        poller.close()
        conn.close()


def propose(conn, market="BTC-EUR", side="buy", eur="6", reason="weekly DCA", ttl=timedelta(minutes=30)):
    return proposals.create(conn, proposals.Draft(market, side, amount_quote=eur, reason=reason), source="cli", ttl=ttl)


def announced(fake, pid):
    """(chat, message_id) of the message announcing proposal ``pid`` to the owner."""
    keys = [k for k, m in fake.messages.items() if m["text"].startswith(f"Proposal #{pid} ")]
    assert len(keys) == 1, keys
    return keys[0]


def events(conn, kind="telegram"):
    return [r["detail"] for r in conn.execute("SELECT detail FROM events WHERE kind = ? ORDER BY id", (kind,))]


def started(poller):
    """The first cycle: getMe and the drain of what was sent before the start."""
    r = poller.poll_once()
    assert r.error is None, r.error
    return r


# --- proposals to the phone -----------------------------------------------------------


def test_a_waiting_proposal_is_sent_once_with_reason_size_guards_and_buttons(make, fake):
    cfg, conn, poller = make()
    started(poller)
    pid = propose(conn, reason="SMA 12 crossed above SMA 26")
    blocked_pid = propose(conn, market="ETH-EUR", eur="15")  # over max_trade_eur = 10
    r = poller.poll_once()
    assert r.announced == [pid, blocked_pid]
    chat, mid = announced(fake, pid)
    text = fake.messages[(chat, mid)]["text"]
    assert chat == OWNER
    assert "BUY BTC-EUR €6.00 — from cli" in text and "Why: SMA 12 crossed above SMA 26" in text
    assert "Guards now: 11 of 11 pass." in text
    shown = fingerprint(proposals.get(conn, pid))  # what the button showed: see the stale-button test
    assert fake.button(chat, mid, "Approve") == f"approve:{pid}:{shown}"
    assert fake.button(chat, mid, "Reject") == f"reject:{pid}:{shown}"
    # issue 23 item 7: a proposal the guards block now is not an approval request: one line, no buttons
    [(key, blocked)] = [(k, m) for k, m in fake.messages.items() if m["text"].startswith(f"#{blocked_pid} ")]
    assert blocked["text"].startswith(
        f"#{blocked_pid} BUY ETH-EUR €15.00 from cli not asked for: blocked by max_trade: €15.00 (fee included)"
        " is over risk.max_trade_eur"
    )
    assert "\n" not in blocked["text"] and "reply_markup" not in blocked
    # once: the cursor is in the database, a second cycle and a restarted poller send nothing again
    assert poller.poll_once().announced == []
    again = Poller(cfg, conn)
    assert again.poll_once().announced == []
    again.close()
    assert len([t for t in fake.texts() if t.startswith("Proposal #")]) == 1


def test_a_proposal_not_delivered_is_sent_again_next_cycle(make, fake):
    cfg, conn, poller = make()
    started(poller)
    pid = propose(conn)
    fake.fail_next("sendMessage", 502, "Bad Gateway")
    assert poller.poll_once().announced == []
    assert poller.poll_once().announced == [pid]


def test_auto_approval_proposals_wait_until_their_tick_has_decided(make, fake):
    """A proposal made inside a running tick may still be auto-approved by it: not announced before that."""
    cfg, conn, poller = make(approval="auto")
    started(poller)
    with db.transaction(conn):
        tick = conn.execute(
            "INSERT INTO ticks (slot, started_at, status, pid) VALUES (?, ?, 'running', 1)",
            (clock.now_iso(), clock.now_iso()),
        ).lastrowid
    pid = propose(conn)
    assert poller.poll_once().announced == []
    with db.transaction(conn):
        conn.execute("UPDATE ticks SET status = 'ok', finished_at = ? WHERE id = ?", (clock.now_iso(), tick))
    assert poller.poll_once().announced == [pid]


# --- taps --------------------------------------------------------------------------------


def test_approve_tap_goes_through_the_cli_code_and_the_executor_still_decides(make, fake, tmp_path):

    cfg, conn, poller = make()
    started(poller)
    pid = propose(conn)
    poller.poll_once()
    chat, mid = announced(fake, pid)
    fake.tap(chat, mid, fake.button(chat, mid, "Approve"))
    assert poller.poll_once().acted == 1
    row = proposals.get(conn, pid)
    assert row["status"] == "approved" and row["decided_by"] == f"telegram:{OWNER}"
    assert row["approval_hash"] == guards.approval_hash(row)  # what proposals.approve writes
    assert fake.answers[-1]["text"] == f"Approved #{pid}"
    edited = fake.messages[(chat, mid)]
    assert "reply_markup" not in edited and f"→ Approved #{pid} at" in edited["text"]
    assert f"`tinybot execute {pid}`" in edited["text"]  # no scheduler runs in this test
    assert events(conn)[-1] == f"chat {OWNER}: tap approve #{pid}: Approved #{pid}"
    ex = paper_exchange(cfg)
    try:
        assert executor.execute(conn, cfg, ex, pid).state == "filled"
    finally:
        ex.close()


def test_reject_tap(make, fake):
    cfg, conn, poller = make()
    started(poller)
    pid = propose(conn)
    poller.poll_once()
    chat, mid = announced(fake, pid)
    fake.tap(chat, mid, fake.button(chat, mid, "Reject"))
    poller.poll_once()
    row = proposals.get(conn, pid)
    assert (row["status"], row["decided_by"]) == ("rejected", f"telegram:{OWNER}")
    assert fake.answers[-1]["text"] == f"Rejected #{pid}"


def test_a_tap_on_a_proposal_already_decided_changes_nothing_and_says_so(make, fake):
    """proposals.reject would reject an approved proposal: a button must not."""
    cfg, conn, poller = make()
    started(poller)
    pid = propose(conn)
    poller.poll_once()
    chat, mid = announced(fake, pid)
    proposals.approve(conn, pid, by="cli")
    fake.tap(chat, mid, fake.button(chat, mid, "Reject"))
    poller.poll_once()
    row = proposals.get(conn, pid)
    assert (row["status"], row["decided_by"]) == ("approved", "cli")
    assert fake.answers[-1]["text"] == f"#{pid} is already approved (by cli)"
    assert "reply_markup" not in fake.messages[(chat, mid)]


def test_a_tap_on_an_expired_proposal_changes_nothing_and_says_so(make, fake):
    with freeze_time("2026-11-29 10:00:00") as frozen:
        cfg, conn, poller = make()
        started(poller)
        pid = propose(conn, ttl=timedelta(minutes=10))
        poller.poll_once()
        chat, mid = announced(fake, pid)
        approve = fake.button(chat, mid, "Approve")
        frozen.tick(timedelta(minutes=11))
        fake.tap(chat, mid, approve)
        poller.poll_once()
        assert proposals.get(conn, pid)["status"] == "pending"  # not approved; expiry marks it at the next tick
        assert fake.answers[-1]["text"].startswith(f"proposal {pid} expired at")
        proposals.expire_stale(conn)
        fake.tap(chat, mid, approve)
        poller.poll_once()
        assert fake.answers[-1]["text"] == f"#{pid} is already expired (by expiry)"


def hand_out_again(conn, pid, **draft):
    """Delete proposal ``pid`` and create a different one under the same id, as a restore of an older backup could."""
    with db.transaction(conn):
        conn.execute("DELETE FROM proposals WHERE id = ?", (pid,))
    new = propose(conn, **draft)
    with db.transaction(conn):
        conn.execute("UPDATE proposals SET id = ? WHERE id = ?", (pid, new))


def test_a_stale_button_never_acts_on_another_proposal_under_its_id(make, fake):
    """Issue 20 item 4: "Approve #4" on a message for a €6 buy approved a new €10 proposal #4 after a restore."""
    with freeze_time("2026-11-29 10:00:00") as frozen:
        cfg, conn, poller = make()
        started(poller)
        pid = propose(conn, eur="6")
        poller.poll_once()
        chat, mid = announced(fake, pid)
        approve, reject = fake.button(chat, mid, "Approve"), fake.button(chat, mid, "Reject")
        frozen.tick(timedelta(minutes=1))
        hand_out_again(conn, pid, eur="6")  # the same market, side and size; only when it was made differs
        fake.tap(chat, mid, reject)
        poller.poll_once()
        assert proposals.get(conn, pid)["status"] == "pending"
        assert fake.answers[-1]["text"].startswith("This message is out of date")
        hand_out_again(conn, pid, eur="10")
        fake.tap(chat, mid, approve)
        fake.tap(chat, mid, f"approve:{pid}")  # a button sent before buttons carried what they showed
        poller.poll_once()
        row = proposals.get(conn, pid)
        assert (row["status"], row["amount_quote"]) == ("pending", "10")
        out_of_date = f"This message is out of date: #{pid} is not the proposal it showed."
        assert [a["text"].split(" Nothing")[0] for a in fake.answers[-2:]] == [out_of_date] * 2
        edited = fake.messages[(chat, mid)]
        assert "reply_markup" not in edited and f"→ {out_of_date}" in edited["text"]
        assert events(conn)[-1].startswith(f"chat {OWNER}: tap approve #{pid}: {out_of_date}")
        # the proposal as it is now, shown again, has buttons that work
        fake.send_text(OWNER, "/proposals")
        poller.poll_once()
        chat, mid = max(k for k in fake.messages if k[0] == OWNER)
        assert "BUY BTC-EUR €10.00" in fake.messages[(chat, mid)]["text"]
        fake.tap(chat, mid, fake.button(chat, mid, "Approve"))
        poller.poll_once()
        assert proposals.get(conn, pid)["status"] == "approved"


def test_button_data_fits_telegrams_64_bytes_whatever_the_id(make, fake):
    cfg, conn, poller = make()
    started(poller)
    pid = propose(conn)
    with db.transaction(conn):
        conn.execute("UPDATE proposals SET id = ? WHERE id = ?", (2**63 - 1, pid))  # SQLite's largest id
    assert poller.poll_once().announced == [2**63 - 1]  # the fake refuses callback_data over 64 bytes, as Telegram
    chat, mid = announced(fake, 2**63 - 1)
    assert all(len(fake.button(chat, mid, b).encode()) <= 64 for b in ("Approve", "Reject"))


def test_forged_buttons_do_nothing(make, fake):
    cfg, conn, poller = make()
    started(poller)
    pid = propose(conn)
    fake.tap(OWNER, 5, "approve:999")
    fake.tap(OWNER, 5, f"execute:{pid}")
    fake.tap(OWNER, 5, "resume:")
    poller.poll_once()
    assert [a["text"] for a in fake.answers] == [
        "no proposal with id 999",
        "Unknown button; nothing done.",
        "This confirmation is used up or expired; nothing done.",
    ]
    assert proposals.get(conn, pid)["status"] == "pending"
    assert killswitch.state(conn)["trading_enabled"] == 1


# --- who is served, and when ---------------------------------------------------------


def test_other_chats_are_ignored_without_a_reply_and_logged_once(make, fake, caplog):
    cfg, conn, poller = make()
    started(poller)
    pid = propose(conn)
    poller.poll_once()
    fake.send_text(STRANGER, "/kill")
    fake.send_text(STRANGER, "/status")
    fake.tap(STRANGER, 5, f"approve:{pid}")
    with caplog.at_level(logging.INFO, logger="tinybot.telegram"):
        r = poller.poll_once()
    assert (r.acted, r.ignored) == (0, 3)
    assert killswitch.state(conn)["trading_enabled"] == 1
    assert proposals.get(conn, pid)["status"] == "pending"
    assert fake.sent(STRANGER) == [] and fake.answers == []
    assert len([m for m in caplog.messages if f"ignoring chat {STRANGER}" in m]) == 1
    assert events(conn) == []


def test_what_was_sent_before_the_start_is_not_acted_on(make, fake):
    with freeze_time("2026-11-29 10:00:00") as frozen:
        cfg, conn, poller = make()
        fake.send_text(OWNER, "/kill sent while the Pi was down")
        fake.tap(OWNER, 7, "approve:1")
        r = started(poller)
        assert r.acted == 0
        assert killswitch.state(conn)["trading_enabled"] == 1
        assert fake.texts(OWNER)[-1].startswith("Not acted on: this was sent while tinybot was not listening")
        assert fake.answers[-1]["text"] == "Not acted on: tapped while tinybot was not listening. Tap again."
        # a message Telegram hands over late, dated well before the start
        frozen.tick(timedelta(minutes=5))
        fake.send_text(OWNER, "/kill", date=int(clock.now().timestamp()) - 600)
        poller.poll_once()
        assert killswitch.state(conn)["trading_enabled"] == 1
        assert fake.texts(OWNER)[-1].startswith("Not acted on: this message is older than tinybot's start")
        fake.send_text(OWNER, "/kill now")
        poller.poll_once()
        assert killswitch.state(conn)["reason"] == "now"


def test_an_update_delivered_again_is_not_acted_on_twice(make, fake):
    """The offset is written before acting; an update at or below it is skipped (even after a restart)."""
    cfg, conn, poller = make()
    started(poller)
    uid = fake.send_text(OWNER, "/kill once")
    assert poller.poll_once().acted == 1
    assert int(conn.execute("SELECT value FROM ops_state WHERE name = 'telegram.offset'").fetchone()[0]) == uid + 1
    killswitch.set_enabled(conn, True, "resumed", by="cli")
    fake.ignore_offset = True  # Telegram hands the same update out again
    r = poller.poll_once()
    assert (r.updates, r.acted) == (1, 0)
    restarted = Poller(cfg, conn)
    assert restarted.poll_once().acted == 0
    restarted.close()
    assert killswitch.state(conn)["trading_enabled"] == 1
    assert (
        fake.texts(OWNER).count(
            "Trading DISABLED: once\nNothing not yet sent will be sent. `tinybot resume` on the Pi turns it back on."
        )
        == 1
    )
    offsets = [p.get("offset") for m, p in fake.calls if m == "getUpdates"]
    assert offsets[-1] == uid + 1  # the restarted poller asked from the stored offset


# --- commands ------------------------------------------------------------------------------


def test_kill_is_one_write_and_the_executor_then_sends_nothing(make, fake):

    cfg, conn, poller = make()
    started(poller)
    pid = propose(conn)
    proposals.approve(conn, pid)
    fake.send_text(OWNER, "/kill leaving for a week")
    poller.poll_once()
    ks = killswitch.state(conn)
    assert (ks["trading_enabled"], ks["reason"], ks["changed_by"]) == (0, "leaving for a week", f"telegram:{OWNER}")
    assert "kill switch ON: leaving for a week" in events(conn)[-1]
    ex = paper_exchange(cfg)
    try:
        res = executor.execute(conn, cfg, ex, pid)
    finally:
        ex.close()
    assert res.state == "blocked" and not res.sent
    fake.send_text(OWNER, "/kill again")
    poller.poll_once()
    assert fake.texts(OWNER)[-1].startswith("Trading was already DISABLED since")
    assert killswitch.state(conn)["reason"] == "leaving for a week"


def test_kill_from_a_separate_process_with_the_exchange_unreachable_and_ccxt_unimportable(fake, tmp_path):
    """`tinybot telegram` in live mode, exchange down, ccxt poisoned: /kill still lands; SIGTERM exits 0."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]  # nothing listens here once closed
    poison = tmp_path / "poison"
    (poison / "ccxt").mkdir(parents=True)
    (poison / "ccxt" / "__init__.py").write_text("raise ImportError('the Telegram loop must not import ccxt')\n")
    cfg_path = tmp_path / "bot.toml"
    cfg_path.write_text(
        paper_config_text().replace('mode = "paper"', 'mode = "live"')
        + f'[exchange]\noperator_id = 1\nurl = "http://127.0.0.1:{dead_port}"\n'
        f'[telegram]\nchat_ids = [{OWNER}]\napi_url = "{fake.url}"\npoll_timeout = "5s"\n'
    )
    env = {
        **os.environ,
        "TINYBOT_CONFIG": str(cfg_path),
        TOKEN_NAME: fake.token,
        "PYTHONPATH": os.pathsep.join([str(poison), str(ROOT)]),
    }
    assert subprocess.run([sys.executable, "-m", "tinybot", "init"], env=env, capture_output=True).returncode == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "tinybot", "telegram"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert fake.wait_for(lambda f: "getUpdates" in f.methods(), 20), proc.stderr.read() if proc.poll() else ""
        second = subprocess.run(
            [sys.executable, "-m", "tinybot", "telegram"], env=env, capture_output=True, text=True, timeout=30
        )
        assert second.returncode == 75  # exitcodes.LOCKED: another process holds the lock
        assert second.stderr.startswith(f"Error: another Telegram loop (PID {proc.pid}) already serves")
        fake.send_text(OWNER, "/kill exchange is down")
        assert fake.wait_for(lambda f: any(t.startswith("Trading DISABLED") for t in f.texts(OWNER)), 20)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "Stopped." in out and fake.token not in out + err
    conn = db.connect(tmp_path / "tinybot.db")
    assert killswitch.state(conn)["trading_enabled"] == 0
    assert killswitch.state(conn)["reason"] == "exchange is down"
    conn.close()


def test_resume_is_off_by_default(make, fake):
    cfg, conn, poller = make()
    started(poller)
    killswitch.set_enabled(conn, False, "test", by="cli")
    fake.send_text(OWNER, "/resume")
    poller.poll_once()
    assert killswitch.state(conn)["trading_enabled"] == 0
    assert fake.texts(OWNER)[-1].startswith("/resume is off (telegram.allow_resume = false in bot.toml)")
    assert fake.sent(OWNER)[-1].get("reply_markup") is None
    # a confirmation button cannot be forged around it either
    fake.tap(OWNER, 5, "resume:0123456789abcdef")
    poller.poll_once()
    assert killswitch.state(conn)["trading_enabled"] == 0


def test_resume_when_allowed_needs_one_confirmation_that_works_once_and_expires(make, fake):
    with freeze_time("2026-11-29 10:00:00") as frozen:
        cfg, conn, poller = make(allow_resume=True, chat_ids=f"[{OWNER}, 333]")
        started(poller)
        killswitch.set_enabled(conn, False, "test", by="cli")
        fake.send_text(OWNER, "/resume")
        poller.poll_once()
        assert killswitch.state(conn)["trading_enabled"] == 0  # asking is not doing
        chat, mid = max(k for k in fake.messages if k[0] == OWNER)
        yes = fake.button(chat, mid, "Yes, resume")
        fake.tap(333, mid, yes)  # another allowed chat cannot confirm the owner's question
        poller.poll_once()
        assert killswitch.state(conn)["trading_enabled"] == 0
        fake.send_text(OWNER, "/resume")
        poller.poll_once()
        chat, mid = max(k for k in fake.messages if k[0] == OWNER)
        yes = fake.button(chat, mid, "Yes, resume")
        fake.tap(chat, mid, yes)
        poller.poll_once()
        assert killswitch.state(conn)["trading_enabled"] == 1
        assert killswitch.state(conn)["changed_by"] == f"telegram:{OWNER}"
        killswitch.set_enabled(conn, False, "again", by="cli")
        fake.tap(chat, mid, yes)  # the same button a second time
        poller.poll_once()
        assert killswitch.state(conn)["trading_enabled"] == 0
        assert fake.answers[-1]["text"] == "This confirmation is used up or expired; nothing done."
        fake.send_text(OWNER, "/resume")
        poller.poll_once()
        chat, mid = max(k for k in fake.messages if k[0] == OWNER)
        frozen.tick(RESUME_TTL + timedelta(seconds=1))
        fake.tap(chat, mid, fake.button(chat, mid, "Yes, resume"))
        poller.poll_once()
        assert killswitch.state(conn)["trading_enabled"] == 0


def test_status_pnl_proposals_why_and_help(make, fake):
    cfg, conn, poller = make()
    started(poller)
    pid = propose(conn)
    poller.poll_once()
    for text in (
        "/status",
        "/pnl",
        "/proposals",
        f"/why {pid}",
        "/why 999",
        "/why x",
        "hello",
        "/status@someone_elses_bot",
        f"/status@{fake.username}",
    ):
        fake.send_text(OWNER, text)
    poller.poll_once()
    replies = fake.sent(OWNER)[1:]  # [0] announced the proposal
    texts = [p["text"] for p in replies]
    assert texts[0].startswith("Trading ENABLED since") and "Pending proposals: 1" in texts[0]
    assert texts[1].startswith("Net €0.00") and "No open positions." in texts[1]
    assert texts[2].startswith(f"Proposal #{pid} waits") and replies[2]["reply_markup"]["inline_keyboard"]
    assert texts[3].startswith(f"#{pid} buy BTC-EUR €6.00 from cli: pending") and "Not executed." in texts[3]
    assert texts[4] == "no proposal with id 999"
    assert texts[5].startswith("Usage: /why N")
    assert texts[6] == HELP
    assert texts[7].startswith("Trading ENABLED")  # the one addressed to this bot; the other bot's was skipped
    assert len(texts) == 8
    assert [e.split(": ", 1)[1] for e in events(conn)][:3] == ["command /status", "command /pnl", "command /proposals"]


def test_pnl_shows_net_result_and_positions(make, fake):

    cfg, conn, poller = make()
    started(poller)
    pid = propose(conn)
    proposals.approve(conn, pid)
    ex = paper_exchange(cfg)
    try:
        assert executor.execute(conn, cfg, ex, pid).state == "filled"
    finally:
        ex.close()
    fake.send_text(OWNER, "/pnl")
    poller.poll_once()
    lines = fake.texts(OWNER)[-1].splitlines()
    assert lines[0] == "Net -€0.02 (configured paper prices)"  # the fee and the spread, at the bid
    assert lines[1] == "realised €0.00, unrealised -€0.02"
    # the benchmarks by the names the book gives them (docs/PNL.md), then the books per advisor
    assert lines[3] == "holding: €25.00 put into BTC-EUR at the start and held (fees included): -€0.09"
    assert lines[4].startswith("DCA: ")
    assert "book manual: net -€0.02" in lines
    assert lines[-1].startswith("BTC-EUR: 0.0000") and lines[-1].endswith("worth €5.98")


def test_why_shows_guard_decisions(make, fake):

    cfg, conn, poller = make()
    started(poller)
    pid = propose(conn, eur="15")
    proposals.approve(conn, pid)
    ex = paper_exchange(cfg)
    try:
        executor.execute(conn, cfg, ex, pid)
    finally:
        ex.close()
    fake.send_text(OWNER, f"/why {pid}")
    poller.poll_once()
    text = fake.texts(OWNER)[-1]
    assert "Execution 1: blocked" in text and "✗ commit max_trade: over_max_trade" in text


# --- the token and the network ------------------------------------------------------------------


def test_the_token_never_reaches_logs_errors_replies_or_the_database(make, fake, caplog):
    cfg, conn, poller = make()
    with caplog.at_level(logging.DEBUG):
        started(poller)
        fake.fail_next("getUpdates", 500, f"Internal error at /bot{fake.token}/getUpdates")
        r = poller.poll_once()
        assert r.error is not None and fake.token not in str(r.error) and "«redacted»" in str(r.error)
        fake.fail_next("getUpdates", 0)  # connection dropped (the kept-alive one, then the fresh one)
        fake.fail_next("getUpdates", 0)
        r = poller.poll_once()
        assert r.error is not None and fake.token not in str(r.error)
        fake.send_text(OWNER, "/kill")
        poller.poll_once()
    dead = BotApi("http://127.0.0.1:9", fake.token)
    with pytest.raises(TelegramError) as e:
        dead.call("getMe")
    assert fake.token not in str(e.value) and "is http://127.0.0.1 reachable?" in str(e.value)
    assert fake.token not in caplog.text
    dump = "\n".join(conn.iterdump())
    assert fake.token not in dump and fake.token.split(":")[1] not in dump
    assert all(fake.token not in t for t in fake.texts())


def test_the_token_is_a_secret_like_the_others(tmp_path, write_config, monkeypatch):
    from tinybot.owner.notify import secret_values

    cfg = write_config(paper_config_text())
    secrets = tmp_path / "secrets.env"
    secrets.write_text("TINYBOT_TELEGRAM_TOKEN=123456:from-the-file-abcdefgh\n")
    secrets.chmod(0o600)
    assert read_token(cfg) == "123456:from-the-file-abcdefgh"
    assert "123456:from-the-file-abcdefgh" in secret_values(cfg)  # redacted from logs and alerts
    secrets.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        read_token(config.load(cfg.path))


def test_missing_or_malformed_token_is_a_clear_error(write_config, monkeypatch):
    cfg = write_config(paper_config_text() + "[telegram]\nchat_ids = [1]\n")
    with pytest.raises(ConfigError) as e:
        read_token(cfg)
    assert str(e.value).startswith("TINYBOT_TELEGRAM_TOKEN is not set: put the token BotFather gave you in")
    monkeypatch.setenv(TOKEN_NAME, '"123:abc def"')
    with pytest.raises(ConfigError) as e:
        read_token(cfg)
    assert "does not look like a bot token" in str(e.value) and "abc def" not in str(e.value)
    assert Background(cfg).start().thread is None  # logs, never raises into the scheduler


def test_a_refused_token_stops_the_loop_with_a_clear_reason(make, fake, monkeypatch):
    cfg, conn, poller = make()
    poller.api.token = "999:wrong-token"
    r = poller.poll_once()
    assert r.error.code == 401 and r.error.fatal
    assert "the token was refused: check TINYBOT_TELEGRAM_TOKEN" in str(r.error)
    import threading

    assert run_loop(poller, threading.Event()) == 1


def test_network_trouble_is_a_result_not_an_exception(make, fake):
    cfg, conn, poller = make()
    started(poller)
    fake.fail_next("getUpdates", 409, "Conflict: terminated by other getUpdates request")
    r = poller.poll_once()
    assert r.error.code == 409 and "another program polls this bot" in str(r.error)
    fake.fail_next("getUpdates", 429, "Too Many Requests: retry after 1")
    assert poller.poll_once().error.retry_after == 1
    fake.send_text(OWNER, "/status")
    assert poller.poll_once().acted == 1


def test_background_thread_serves_and_stops_promptly_during_a_long_poll(make, fake):
    fake.max_poll = 30  # the long poll really waits, as Telegram's does
    cfg, conn, _ = make(poll_timeout="25s")
    bg = Background(cfg).start()
    try:
        assert fake.wait_for(lambda f: "getUpdates" in f.methods(), 10)
        fake.send_text(OWNER, "/kill from the thread")
        assert fake.wait_for(lambda f: any(t.startswith("Trading DISABLED") for t in f.texts(OWNER)), 10)
        assert killswitch.state(conn)["changed_by"] == f"telegram:{OWNER}"
        assert fake.wait_for(lambda f: f.methods().count("getUpdates") >= 3, 10)  # back in a long poll
    finally:
        bg.stop(wait=5)
    assert not bg.thread.is_alive() and bg.exit_code == 0


def test_recent_chats_lists_who_wrote_and_confirms_nothing(make, fake):
    cfg, conn, poller = make(chat_ids="[]")
    fake.send_text(555, "/start")
    rows = recent_chats(cfg)
    assert rows == [{"chat_id": 555, "type": "private", "name": "Owner", "last_text": "/start", "allowed": False}]
    assert fake.pending_updates() == 1
    assert [m for m, _ in fake.calls] == ["getUpdates"]


def test_cli_telegram_chats_and_test(make, fake, monkeypatch):
    from click.testing import CliRunner

    from tinybot.cli import cli

    cfg, conn, poller = make()
    fake.send_text(OWNER, "hi")
    res = CliRunner().invoke(cli, ["--config", str(cfg.path), "telegram", "--chats", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)[0]["chat_id"] == OWNER
    res = CliRunner().invoke(cli, ["--config", str(cfg.path), "telegram", "--test"])
    assert res.exit_code == 0 and res.output.startswith(f"OK: token works: @{fake.username}; test message delivered")
    assert fake.texts(OWNER)[-1].startswith("tinybot test message from")
    monkeypatch.setenv(TOKEN_NAME, "999:wrong-token")
    res = CliRunner().invoke(cli, ["--config", str(cfg.path), "telegram", "--test"])
    assert res.exit_code == 1 and "Error: Telegram getMe: 401 Unauthorized — the token was refused" in res.output


def test_a_refused_token_exits_78_so_systemd_does_not_restart_it(make, fake, monkeypatch):
    from click.testing import CliRunner

    from tinybot.cli import cli

    cfg, conn, poller = make()
    monkeypatch.setenv(TOKEN_NAME, "999:wrong-token")
    res = CliRunner().invoke(cli, ["--config", str(cfg.path), "telegram"])
    assert res.exit_code == 78, res.output
    assert "Error: Telegram getMe: 401 Unauthorized — the token was refused" in res.output
    assert "wrong-token" not in res.output


def test_telegram_needs_chat_ids(write_config, monkeypatch):
    from click.testing import CliRunner

    from tinybot.cli import cli

    cfg = write_config(paper_config_text())
    monkeypatch.setenv(TOKEN_NAME, "123:abcdefgh")
    res = CliRunner().invoke(cli, ["--config", str(cfg.path), "telegram"])
    assert res.exit_code == 1
    assert res.output.startswith(f"Error: telegram.chat_ids is empty in {cfg.path}: add your chat id")


# --- config ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "table, message",
    [
        ('chat_ids = ["123"]', "telegram.chat_ids: must be a list of whole numbers, like [123456789]"),
        ("chat_ids = [true]", "telegram.chat_ids: must be a list of whole numbers, like [123456789]"),
        ('poll_timeout = "2m"', "telegram.poll_timeout: must be at most 50s"),
        ('api_url = "api.telegram.org"', "telegram.api_url: 'api.telegram.org' is not an http(s) URL"),
        ("allow_resume = 1", "telegram.allow_resume: must be true or false, not int"),
        ('token = "123:abc"', "telegram.token: unknown key"),
    ],
)
def test_telegram_config_is_read_strictly(write_config, table, message):
    with pytest.raises(ConfigError) as e:
        write_config(paper_config_text() + f"[telegram]\n{table}\n")
    assert message in str(e.value)


def test_telegram_config_defaults(write_config):
    cfg = write_config(paper_config_text() + "[telegram]\nchat_ids = [5, -100123, 5]\n")
    assert cfg.telegram.chat_ids == (5, -100123)
    assert cfg.telegram.api_url == "https://api.telegram.org" and cfg.telegram.allow_resume is False
    assert cfg.telegram.poll_timeout == timedelta(seconds=25)
    assert not enabled(write_config(paper_config_text()))


# --- issue 23 item 7: follow-ups and expired requests ----------------------------------------------


def test_after_an_approval_from_the_phone_a_follow_up_says_filled_at_what_price_or_blocked_and_why(make, fake):
    cfg, conn, poller = make()
    started(poller)
    filled, blocked = propose(conn), propose(conn, eur="7")
    poller.poll_once()
    for pid in (filled, blocked):
        chat, mid = announced(fake, pid)
        fake.tap(chat, mid, fake.button(chat, mid, "Approve"))
    poller.poll_once()
    before = len(fake.texts(OWNER))
    poller.poll_once()
    assert len(fake.texts(OWNER)) == before  # nothing decided yet: nothing said
    ex = paper_exchange(cfg)
    try:
        assert executor.execute(conn, cfg, ex, filled).state == "filled"
        killswitch.set_enabled(conn, False, "owner checks something", by="cli")
        assert executor.execute(conn, cfg, ex, blocked).state == "blocked"
    finally:
        ex.close()
    poller.poll_once()
    said = fake.texts(OWNER)[before:]
    assert said[0].startswith(f"#{filled} filled: buy BTC-EUR ") and " @ " in said[0] and "= €5.9" in said[0]
    assert said[1].startswith(f"#{blocked} blocked: kill_switch: ") and said[1].endswith("Nothing was bought or sold.")
    poller.poll_once()
    assert fake.texts(OWNER)[before:] == said  # once each


def test_an_approval_request_that_expires_is_edited_to_say_so_in_local_time(make, fake):
    with freeze_time("2026-11-29 10:00:00") as frozen:
        cfg, conn, poller = make(extra="")
        cfg = config.load(cfg.path.write_text('timezone = "Europe/Amsterdam"\n' + cfg.path.read_text()) and cfg.path)
        poller.close()
        poller = Poller(cfg, conn)
        started(poller)
        pid = propose(conn, ttl=timedelta(minutes=10))
        decided = propose(conn)
        poller.poll_once()
        chat, mid = announced(fake, pid)
        assert "Expires 11:10 CET (in 10 min)" in fake.messages[(chat, mid)]["text"]  # local, not UTC
        proposals.reject(conn, decided, by="cli")
        frozen.tick(timedelta(minutes=11))
        poller.poll_once()
        poller.close()
    msg = fake.messages[(chat, mid)]
    assert msg["text"].endswith("\n\n→ Expired at 11:10 CET; nothing done.") and "reply_markup" not in msg
    other = fake.messages[announced(fake, decided)]
    assert other["text"].endswith("\n\n→ Rejected by cli.") and "reply_markup" not in other
    edits = [p for m, p in fake.calls if m == "editMessageText"]
    assert len(edits) == 2  # once each


# --- issue 23 item 8: /balance, /daily, /sell ---------------------------------------------------


def test_balance_daily_and_sell_from_the_phone(make, fake):
    with freeze_time("2026-11-29 10:00:00") as frozen:
        cfg, conn, poller = make()
        started(poller)
        pid = propose(conn)
        proposals.approve(conn, pid, by="cli")
        ex = paper_exchange(cfg)
        try:
            assert executor.execute(conn, cfg, ex, pid).state == "filled"
        finally:
            ex.close()
        held = conn.execute("SELECT base FROM book_positions WHERE book = 'manual'").fetchone()["base"]
        frozen.tick(timedelta(minutes=5))
        for text in ("/balance", "/daily", "/sell BTC-EUR", "/sell ETH-EUR all", "/sell BTC-EUR 0.0001 dca"):
            fake.send_text(OWNER, text)
        poller.poll_once()
        poller.poll_once()  # the announcer sends the new sell proposal
    said = fake.texts(OWNER)
    balance, daily, sold, none, empty = said[said.index(next(t for t in said if t.startswith("Paper balances"))) :][:5]
    assert balance.startswith("Paper balances: ") and " BTC " in balance + " "
    assert balance.endswith(f"Books:\nBTC-EUR manual: {held} (cost €6.00)")
    assert daily.startswith("Sunday 29 November: realised €0.00, 1 fill(s) (1 buy, 0 sell)")
    assert "\nFills:\n10:00 UTC buy BTC-EUR " in daily
    [row] = conn.execute("SELECT * FROM proposals WHERE source = 'telegram'").fetchall()
    assert (row["side"], row["market"], row["amount"], row["book"], row["status"]) == (
        "sell",
        "BTC-EUR",
        held,
        "manual",
        "pending",
    )  # pending: approval and the guards still decide
    assert sold.startswith(f"Proposal #{row['id']}: SELL BTC-EUR {held} from the manual book")
    assert none == "no book holds ETH-EUR: nothing to sell"
    assert empty == "the dca book holds no BTC-EUR: nothing to sell"
    announced_now = fake.texts(OWNER)[-1]
    assert announced_now.startswith((f"Proposal #{row['id']} ", f"#{row['id']} SELL BTC-EUR"))


def test_score_renders_tinybot_scores_board(make, fake):
    """/score is `tinybot score`'s board, a few lines per advisor with its verdict against each benchmark."""
    from tinybot.analysis import score

    cfg, conn, poller = make()
    started(poller)
    pid = propose(conn)
    proposals.approve(conn, pid)
    ex = paper_exchange(cfg)
    try:
        assert executor.execute(conn, cfg, ex, pid).state == "filled"
    finally:
        ex.close()
    fake.send_text(OWNER, "/score")
    poller.poll_once()
    lines = fake.texts(OWNER)[-1].splitlines()
    assert lines[0].startswith("manual: net -€0.02 (") and ", 1 fill(s), fees €0.02, LLM €0.00" in lines[0]
    assert lines[1].startswith("  vs holding: ") and lines[1].endswith("not enough evidence yet (1 day)")
    assert lines[2].startswith("  vs DCA: ")
    assert lines == score.phone_text(score.scoreboard(conn, cfg)).splitlines()
