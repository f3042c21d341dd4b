"""What each /command and button from the owner's phone does: parse it, call one core function, render its answer.

The core computes, this module only formats (docs/TELEGRAM.md shows each
reply): /status is ``status.status``, /pnl is ``pnl.report`` (the one book),
/proposals is ``proposals.listing``, /why is ``status.why``, a proposal's
pre-check is ``guards.precheck`` (a proposal it blocks is told in one line, never sent with buttons),
/kill is ``killswitch.set_enabled``, and a
tap on Approve/Reject is ``proposals.approve``/``reject`` (the CLI's code; the
executor's guards decide again at send time).

A button acts only on the proposal it showed: its data carries a fingerprint
of that proposal (``fingerprint``), and a proposal under the same id that
does not match it (a restore can hand an id out again) is answered "this
message is out of date" and left alone.  It acts only on a *pending*
proposal; one already decided or expired is answered so.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Callable

from ...base import clock
from ...store import db
from ...base.config import Config
from .api import BotApi, short
from .followup import Followups

log = logging.getLogger("tinybot.telegram")

ANNOUNCED_KEY = "telegram.announced"  # the highest proposal id sent to the owner
RESUME_KEY = "telegram.resume"  # the one open /resume confirmation (JSON)
RESUME_TTL = timedelta(minutes=2)
FINGERPRINT_CHARS = 12  # 48 bits; "approve:<id>:<fingerprint>" stays far inside callback_data's 64 bytes
HELP = (
    "Proposals waiting for your approval arrive here with Approve/Reject buttons.\nCommands:\n"
    "/status – trading on/off, positions, caps used today, scheduler\n"
    "/pnl – net profit or loss, fees, LLM cost, against holding\n"
    "/score – each advisor against holding and DCA, with a verdict\n"
    "/proposals – proposals waiting for you\n"
    "/why N – every guard decision for proposal N\n"
    "/balance – balances and what each book holds\n"
    "/daily – today's fills and result\n"
    "/sell MARKET [AMOUNT|all] [BOOK] – propose a sell (approval and the guards still decide)\n"
    "/kill [reason] – stop all trading now\n"
    "/resume – allow trading again (only if telegram.allow_resume = true)"
)

Prices = Callable[[str], Any]  # market -> Ticker, for the pre-check


class Commands:
    """The commands and buttons of one allowed chat at a time; replies go out through ``api``.

    ``conn`` belongs to the calling thread.  ``prices(market)`` may give a
    Ticker for a proposal's pre-check (else the guards that need a price say
    so and decide at send time).
    """

    def __init__(
        self, cfg: Config, conn: sqlite3.Connection, api: BotApi, *, prices: Prices | None, followups: Followups
    ):
        self.cfg, self.conn, self.api, self.prices, self.followups = cfg, conn, api, prices, followups

    def on_message(self, chat: int, msg: dict, *, username: str | None) -> None:
        text = (msg.get("text") or "").strip()
        word, _, rest = text.partition(" ")
        cmd, _, addressee = word.partition("@")
        if addressee and username and addressee.lower() != username.lower():
            return  # a command for another bot in a group
        audit(self.conn, chat, f"command {short(text)}")
        handler = {
            "/status": self.cmd_status,
            "/pnl": self.cmd_pnl,
            "/score": self.cmd_score,
            "/proposals": self.cmd_proposals,
            "/why": self.cmd_why,
            "/balance": self.cmd_balance,
            "/daily": self.cmd_daily,
            "/sell": self.cmd_sell,
            "/kill": self.cmd_kill,
            "/resume": self.cmd_resume,
        }.get(cmd.lower())
        if handler is None:
            self.api.send(chat, HELP)
            return
        handler(chat, rest.strip())

    def cmd_status(self, chat: int, rest: str) -> None:
        from ...analysis.status import status

        self.api.send(chat, status_text(status(self.conn, self.cfg), self.cfg))

    def cmd_pnl(self, chat: int, rest: str) -> None:
        from ...analysis import pnl

        self.api.send(chat, pnl_text(pnl.report(self.conn, self.cfg), self.cfg))

    def cmd_score(self, chat: int, rest: str) -> None:
        from ...analysis import score

        self.api.send(chat, score.phone_text(score.scoreboard(self.conn, self.cfg)))

    def cmd_proposals(self, chat: int, rest: str) -> None:
        from ...trade import proposals

        rows = proposals.listing(self.conn, "pending", limit=10)
        if not rows:
            self.api.send(chat, "No proposal is waiting for approval.")
            return
        for r in reversed(rows):
            text, markup = request(self.conn, self.cfg, r, self.prices)
            sent = self.api.send(chat, text, markup=markup)
            if sent is not None and markup is not None:
                self.followups.requested(r["id"], sent)

    def cmd_why(self, chat: int, rest: str) -> None:
        from ...trade.proposals import ProposalError
        from ...analysis.status import why

        if not rest.lstrip("#").isdigit():
            self.api.send(chat, "Usage: /why N (a proposal number, as in /proposals)")
            return
        try:
            d = why(self.conn, int(rest.lstrip("#")))
        except ProposalError as e:
            self.api.send(chat, str(e))
            return
        self.api.send(chat, why_text(d))

    def cmd_balance(self, chat: int, rest: str) -> None:
        from .account import balance_text

        self.api.send(chat, balance_text(self.conn, self.cfg))

    def cmd_daily(self, chat: int, rest: str) -> None:
        from .account import daily_text

        self.api.send(chat, daily_text(self.conn, self.cfg))

    def cmd_sell(self, chat: int, rest: str) -> None:
        """A pending sell proposal; the announcer sends it for approval like any other (the guards decide)."""
        from ...trade.proposals import ProposalError
        from .account import propose_sell

        try:
            reply = propose_sell(self.conn, self.cfg, rest)
        except ProposalError as e:
            reply = str(e)
        audit(self.conn, chat, f"/sell: {reply}")
        self.api.send(chat, reply)

    def cmd_kill(self, chat: int, rest: str) -> None:
        from ...trade import killswitch

        reason = short(rest, 200) or "killed from Telegram"
        if killswitch.set_enabled(self.conn, False, reason, by=f"telegram:{chat}"):
            audit(self.conn, chat, f"kill switch ON: {reason}", severity="warning")
            self.api.send(
                chat,
                f"Trading DISABLED: {reason}\nNothing not yet sent will be sent."
                + (" /resume (with confirmation) or" if self.cfg.telegram.allow_resume else "")
                + " `tinybot resume` on the Pi turns it back on.",
            )
        else:
            ks = killswitch.state(self.conn)
            self.api.send(
                chat,
                f"Trading was already DISABLED since {hm(ks['changed_at'], self.cfg)} ({ks['changed_by']}: {ks['reason']}).",
            )

    def cmd_resume(self, chat: int, rest: str) -> None:
        from ...trade import killswitch
        from ...store.db import set_state

        if not self.cfg.telegram.allow_resume:
            audit(self.conn, chat, "/resume refused: telegram.allow_resume is false")
            self.api.send(
                chat,
                "/resume is off (telegram.allow_resume = false in bot.toml): from the phone you can"
                " only stop trading. On the Pi: `tinybot resume`.",
            )
            return
        if killswitch.state(self.conn)["trading_enabled"]:
            self.api.send(chat, "Trading is already enabled.")
            return
        import secrets  # the nonce's randomness; loaded by the one command that needs it

        nonce = secrets.token_hex(8)
        set_state(
            self.conn,
            RESUME_KEY,
            json.dumps({"nonce": nonce, "chat": chat, "until": clock.to_iso(clock.now() + RESUME_TTL)}),
        )
        ks = killswitch.state(self.conn)
        self.api.send(
            chat,
            f"Resume trading? It was stopped {hm(ks['changed_at'], self.cfg)} by {ks['changed_by']}:"
            f" {ks['reason']}.\nThis button works once, for {int(RESUME_TTL.total_seconds() // 60)}"
            " minutes.",
            markup=resume_buttons(nonce),
        )

    # -- buttons --
    def on_tap(self, chat: int, query: dict) -> None:
        data = str(query.get("data") or "")
        action, _, arg = data.partition(":")
        pid, _, shown = arg.partition(":")
        if action in ("approve", "reject") and pid.isdigit():
            self._decide(chat, query, action, int(pid), shown)
        elif action in ("resume", "cancel"):
            self._confirm_resume(chat, query, action, arg)
        else:
            audit(self.conn, chat, f"unknown button {short(data, 64)!r}")
            self.api.answer(query["id"], "Unknown button; nothing done.")

    def _decide(self, chat: int, query: dict, action: str, pid: int, shown: str) -> None:
        """Approve or reject through the CLI's code: only the proposal the button showed, only while pending."""
        from ...trade import proposals

        by = f"telegram:{chat}"
        try:
            row = proposals.get(self.conn, pid)
        except proposals.ProposalError as e:
            audit(self.conn, chat, f"tap {action} #{pid}: {e}")
            self.api.answer(query["id"], str(e))
            return
        if shown != fingerprint(row):
            outcome = (
                f"This message is out of date: #{pid} is not the proposal it showed. Nothing done;"
                " /proposals shows what waits now."
            )
        elif row["status"] != "pending":
            outcome = f"#{pid} is already {row['status']}" + (f" (by {row['decided_by']})" if row["decided_by"] else "")
        else:
            try:
                (proposals.approve if action == "approve" else proposals.reject)(self.conn, pid, by=by)
                row = proposals.get(self.conn, pid)
                done = "approved" if action == "approve" else "rejected"
                if row["status"] == done and row["decided_by"] == by:
                    outcome = f"{done.capitalize()} #{pid}"
                else:
                    outcome = f"#{pid} is already {row['status']} (by {row['decided_by']})"
            except proposals.ProposalError as e:
                outcome = str(e)
        audit(self.conn, chat, f"tap {action} #{pid}: {outcome}", severity="info")
        self.api.answer(query["id"], outcome)
        final = outcome
        if outcome.startswith("Approved"):
            final += f" at {hm(clock.now_iso(), self.cfg)}. " + self._execution_hint(pid)
            self.followups.approved(pid, chat)
        self.followups.answered(pid, chat)
        self.api.edit(query, final)

    def _execution_hint(self, pid: int) -> str:
        from ...store.liveness import liveness

        if liveness(self.conn, self.cfg)["alive"]:
            return "tinybot run executes it at its next tick; the guards decide again at send time."
        return f"No `tinybot run` is running: on the Pi, `tinybot execute {pid}`."

    def _confirm_resume(self, chat: int, query: dict, action: str, nonce: str) -> None:
        from ...trade import killswitch
        from ...store.db import get_state, set_state

        with db.transaction(self.conn):  # the confirmation is used up in the same transaction that checks it
            raw = get_state(self.conn, RESUME_KEY)
            open_ = json.loads(raw) if raw else {}
            valid = (
                bool(nonce)
                and open_.get("nonce") == nonce
                and open_.get("chat") == chat
                and clock.now() < clock.from_iso(open_["until"])
            )
            if valid or open_.get("nonce") == nonce:
                set_state(self.conn, RESUME_KEY, "{}")
        if not valid:
            outcome = "This confirmation is used up or expired; nothing done."
        elif action == "cancel":
            outcome = "Cancelled; trading stays disabled."
        elif not self.cfg.telegram.allow_resume:
            outcome = "/resume is off (telegram.allow_resume = false); nothing done."
        elif killswitch.set_enabled(self.conn, True, "resumed from Telegram", by=f"telegram:{chat}"):
            outcome = "Trading ENABLED."
        else:
            outcome = "Trading was already enabled."
        audit(
            self.conn,
            chat,
            f"tap {action} (resume confirmation): {outcome}",
            severity="warning" if outcome == "Trading ENABLED." else "info",
        )
        self.api.answer(query["id"], outcome)
        self.api.edit(query, outcome)


class Announcer:
    """Sends each new proposal waiting for approval to every allowed chat, once, with its pre-check and buttons.

    Once even across restarts: the highest id sent is kept in ``ops_state``.
    """

    def __init__(
        self,
        cfg: Config,
        conn: sqlite3.Connection,
        api: BotApi,
        chats: frozenset[int],
        *,
        prices: Prices | None,
        followups: Followups,
    ):
        self.cfg, self.conn, self.api, self.chats, self.prices = cfg, conn, api, chats, prices
        self.followups = followups

    def announce(self) -> list[int]:
        """The ids sent this time, in order; stops at the first one no chat received (sent again next cycle)."""
        from ...store.db import get_state, set_state

        cursor = int(get_state(self.conn, ANNOUNCED_KEY) or 0)
        now = clock.now()
        rows = self.conn.execute(
            "SELECT * FROM proposals WHERE id > ? AND status = 'pending' AND expires_at > ? ORDER BY id LIMIT 20",
            (cursor, clock.to_iso(now)),
        ).fetchall()
        sent = []
        for row in rows:
            if self._tick_may_still_approve(row, now):
                break  # its tick's approval step has not run yet: announce it after, in order
            text, markup = request(self.conn, self.cfg, row, self.prices)
            delivered = [m for m in (self.api.send(c, text, markup=markup) for c in sorted(self.chats)) if m]
            if not delivered:
                break  # Telegram unreachable: the same proposal next cycle
            set_state(self.conn, ANNOUNCED_KEY, str(row["id"]))
            for message in delivered if markup is not None else ():
                self.followups.requested(row["id"], message)
            sent.append(row["id"])
        return sent

    def _tick_may_still_approve(self, row, now: datetime) -> bool:
        """With approval = "auto", a proposal made inside a tick still running may be approved by that tick."""
        if self.cfg.scheduler.approval != "auto":
            return False
        return (
            self.conn.execute(
                "SELECT 1 FROM ticks WHERE status = 'running' AND started_at <= ? AND started_at > ? LIMIT 1",
                (row["created_at"], clock.to_iso(now - timedelta(hours=1))),
            ).fetchone()
            is not None
        )


def audit(conn: sqlite3.Connection, chat: int, detail: str, *, severity: str = "info") -> None:
    """The audit trail: an ``events`` row of kind ``telegram`` naming the chat."""

    with db.transaction(conn):
        db.event(conn, "telegram", f"chat {chat}: {detail}", severity=severity)


def default_prices(cfg: Config) -> Prices | None:
    """[paper] prices when they are fixed; otherwise no price (the executor reads a fresh one at send time)."""
    if not (cfg.mode == "paper" and cfg.paper.prices):
        return None
    fixed: list = []  # the exchange package loads on the first pre-check, not while the loop waits

    def ticker(market: str):
        if not fixed:
            from ...exchange.static import StaticMarketData

            fixed.append(StaticMarketData(cfg.paper.prices))
        return fixed[0].ticker(market)

    return ticker


def fingerprint(row) -> str:
    """What a button showed of its proposal: what approving it approves (``guards.approval_hash``: market,
    side, size, expiry, book) and when it was created, in a few hex characters.  Another proposal under
    the same id does not match."""
    from ...trade import guards

    text = f"{guards.approval_hash(row)}|{row['created_at']}"
    return hashlib.sha256(text.encode()).hexdigest()[:FINGERPRINT_CHARS]


# --- rendering: what the core computed, as the owner reads it --------------------------------


def request(conn: sqlite3.Connection, cfg: Config, row, prices: Prices | None) -> tuple[str, dict | None]:
    """(text, buttons) for a pending proposal: an approval request when the guards would pass it now,
    else one line saying what blocks it (no buttons: approving it would only be blocked at send time)."""
    verdicts = precheck(conn, cfg, row, prices)
    blocks = blocking(verdicts)
    if blocks:
        return blocked_line(row, blocks, cfg), None
    return proposal_text(row, verdicts, cfg), buttons(row)


def precheck(conn: sqlite3.Connection, cfg: Config, row, prices: Prices | None) -> list:
    """What the guards say now (``guards.precheck``), with a price when one can be had."""
    from ...trade import guards

    ticker = None
    try:
        ticker = prices(row["market"]) if prices else None
    except Exception as e:  # a price is a nicety here: the executor reads a fresh one at send time
        log.info("telegram: no price for %s for the pre-check: %s", row["market"], e)
    return guards.precheck(conn, cfg, row, ticker, clock.now())


def blocking(verdicts: list) -> list:
    """The verdicts that block now (a guard that only lacks a price decides at send time)."""
    return [v for v in verdicts if not v.ok and v.code != "no_price"]


def blocked_line(row, blocks: list, cfg: Config) -> str:
    first = blocks[0]
    more = f" (and {', '.join(v.guard for v in blocks[1:])})" if blocks[1:] else ""
    return (
        f"#{row['id']} {row['side'].upper()} {row['market']} {size(row)} from {row['source']} not asked for:"
        f" blocked by {first.guard}: {first.detail}{more}. It expires {hm(row['expires_at'], cfg)} unless"
        " something changes; /why " + str(row["id"]) + " has the rest."
    )


def proposal_text(row, verdicts: list, cfg: Config | None = None) -> str:
    expires = clock.from_iso(row["expires_at"])
    left = max(int((expires - clock.now()).total_seconds() // 60), 0)
    lines = [
        f"Proposal #{row['id']} waits for your approval",
        f"{row['side'].upper()} {row['market']} {size(row)} — from {row['source']}",
    ]
    if row["reason"]:
        lines.append(f"Why: {short(row['reason'], 600)}")
    lines.append(f"Expires {hm(row['expires_at'], cfg)} (in {clock.spoken(timedelta(minutes=left))})")
    return "\n".join(lines + precheck_lines(verdicts))


def precheck_lines(verdicts: list) -> list[str]:
    blocks = blocking(verdicts)
    unknown = [v for v in verdicts if not v.ok and v.code == "no_price"]
    ok = len(verdicts) - len(blocks) - len(unknown)
    lines = [f"Guards now: {ok} of {len(verdicts)} pass" + (" — would be BLOCKED:" if blocks else ".")]
    lines += [f"✗ {v.guard}: {v.detail}" for v in blocks]
    if unknown:
        lines.append("? needs a price, decided at send time: " + ", ".join(v.guard for v in unknown))
    lines.append("Balance, exchange minimum and precision are checked at send time.")
    return lines


def buttons(row) -> dict:
    pid, shown = row["id"], fingerprint(row)
    return {
        "inline_keyboard": [
            [
                {"text": f"Approve #{pid}", "callback_data": f"approve:{pid}:{shown}"},
                {"text": f"Reject #{pid}", "callback_data": f"reject:{pid}:{shown}"},
            ]
        ]
    }


def resume_buttons(nonce: str) -> dict:
    return {
        "inline_keyboard": [
            [
                {"text": "Yes, resume trading", "callback_data": f"resume:{nonce}"},
                {"text": "Cancel", "callback_data": f"cancel:{nonce}"},
            ]
        ]
    }


def status_text(d: dict, cfg: Config) -> str:
    from ...analysis.status import last_tick_line

    ks = d["kill_switch"]
    lines = [
        f"Trading {'ENABLED' if ks['trading_enabled'] else 'DISABLED (' + ks['reason'] + ')'}"
        f" since {hm(ks['changed_at'], cfg)} · mode {d['mode']}"
    ]
    lines.append(
        "Positions: "
        + (
            ", ".join(f"{p['market']} {p['base']} (cost €{Decimal(p['cost_eur']):.2f})" for p in d["positions"])
            or "none"
        )
    )
    c = d["caps"]
    lines.append(
        f"Today €{c['daily']['used_eur']} of €{c['daily']['cap_eur']} spent;"
        f" exposure €{c['exposure']['used_eur']} of €{c['exposure']['cap_eur']}"
    )
    lines.append(
        f"Pending proposals: {d['pending_proposals']} · unresolved executions: {len(d['unresolved_executions'])}"
    )
    s, t = d["scheduler"], d["scheduler"]["last_tick"]
    lines.append(f"Scheduler: {s['state']}" + (" (STALE)" if s["stale"] else ""))
    lines.append(last_tick_line(t, s, cfg))
    return "\n".join(lines)


def pnl_text(d: dict, cfg: Config) -> str:
    from ...base.money import eur_text

    when = f"prices of {hm(d['prices_at'], cfg)}" if d["prices_at"] else "configured paper prices"
    lines = [
        f"Net {eur_text(d['net_eur'])} ({when})",
        f"realised {eur_text(d['realised_eur'])}, unrealised {eur_text(d['unrealised_eur'])}",
        f"fees {eur_text(d['fees_eur'])} (included), LLM {eur_text(d['llm_cost_eur'])}",
    ]
    lines += [
        f"{b['title']}: {eur_text(b['pnl_eur'])}" for b in d["benchmarks"].values() if b and b["pnl_eur"] is not None
    ]
    lines += [f"book {a['advisor']}: net {eur_text(a['net_eur'])}" for a in d["advisors"]]
    lines += [
        f"{p['market']}: {p['base']} worth {eur_text(p['value_eur'])}"
        + ("" if p["sellable"] is not False else " — STRANDED under the €5 minimum")
        for p in d["positions"]
    ] or ["No open positions."]
    return "\n".join(lines)


def why_text(d: dict) -> str:
    p, e = d["proposal"], d["execution"]
    lines = [
        f"#{p['id']} {p['side']} {p['market']} {size(p)} from {p['source']}: {p['status']}"
        + (f" by {p['decided_by']}" if p["decided_by"] else "")
    ]
    if p["reason"]:
        lines.append(f"Why: {short(p['reason'], 300)}")
    lines.append(
        f"Execution {e['id']}: {e['state']}" + (f" — {e['reason']}" if e["reason"] else "") if e else "Not executed."
    )
    for dec in d["decisions"][-20:]:
        mark = "✓" if dec["verdict"] == "pass" else "✗"
        lines.append(
            f"{mark} {dec['stage']} {dec['guard']}: {dec['reason_code']}"
            + (f" — {dec['detail']}" if dec["verdict"] != "pass" and dec["detail"] else "")
        )
    return "\n".join(lines)


def size(row) -> str:
    return f"€{Decimal(row['amount_quote']):.2f}" if row["amount_quote"] is not None else f"{row['amount']} (base)"


def hm(iso: str | None, cfg: Config | None = None) -> str:
    """A moment in the configured timezone: '17:14 CET' today, else with its date."""
    return clock.human_time(iso, cfg.tz if cfg is not None else None) if iso else "?"
