"""The replay's LLM answers: from the LLM record at €0 (RecordedLLM), or with --llm live from the provider (LiveLLM)."""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, HTTPServer

from ...base import clock, money
from ...advisors import llm_budget, llm_record
from ...advisors import llm as llm_advisor
from ...base.config import Config
from .plan import ReplayError

LLM_MODES = ("record", "live", "off")  # --llm: answer from the LLM record / and call it on a miss / leave it out


class RecordedLLM:
    """An OpenAI-compatible ``/v1/chat/completions`` on 127.0.0.1 for the replay's llm advisor.

    The advisor runs unchanged (prompt, budget, strict answer check) against this URL.  A prompt
    found in the LLM record (tinybot/advisors/llm_record.py, read from the live database) gets the recorded
    answer: nothing is called, nothing is spent.  Any other prompt gets a 404 — the advisor calls
    that "not billed" and proposes nothing — unless ``live`` (``--llm live``) forwards it to the
    configured provider within ``live.budget_eur``.
    """

    def __init__(self, recorded: dict, live: "LiveLLM | None" = None):
        self.recorded, self.live = recorded, live
        self.from_record = self.not_in_record = 0
        self.models: set[str] = set()
        self.server = HTTPServer(("127.0.0.1", 0), _ChatHandler)
        self.server.stand_in = self
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def answer(self, body: dict, prompt: str) -> tuple[int, object]:
        """The HTTP status and body for one request: the recorded answer, the live one, or a 404."""
        found = self.recorded.get(prompt)
        if found is not None:
            self.from_record += 1
            self.models.add(found.model)
            return 200, found.answer
        if self.live is not None:
            return self.live.forward(body)
        self.not_in_record += 1
        return 404, {"error": {"message": "no recorded answer for this prompt (tinybot replay --llm record)"}}

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


class _ChatHandler(BaseHTTPRequestHandler):
    """The HTTP side of a RecordedLLM (``server.stand_in``): reads a chat completion request, writes its answer."""

    def log_message(self, *args):
        pass

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw)
            prompt = llm_record.canonical_prompt(body["messages"])
        except (ValueError, KeyError, TypeError):
            return self._send(400, {"error": {"message": "not a chat completion request"}})
        self._send(*self.server.stand_in.answer(body, prompt))

    def _send(self, status: int, payload) -> None:
        data = (payload if isinstance(payload, str) else json.dumps(payload)).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


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
        worst = llm_budget.worst_case_eur(llm_advisor.prompt_tokens_estimate(body), self.cfg.llm)
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
            data = llm_advisor.post_chat(self.cfg, body, self.key)
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


def llm_answers(cfg: Config, store: sqlite3.Connection, mode: str) -> tuple[dict, LiveLLM | None] | None:
    """The LLM record and --llm live's forwarder (or None) when the llm advisor runs in this replay (live or in the
    shadows), else None."""
    if ("llm" not in cfg.advisors and "llm" not in cfg.scoreboard.shadow) or mode == "off":
        return None
    live = None
    if mode == "live":
        why = llm_advisor.disabled_reason(cfg)  # the same checks as live: https or loopback, a key where needed
        if why:
            raise ReplayError(f"--llm live: {why}")
        live = LiveLLM(cfg, live_llm_budget(store, cfg, clock.now()))  # the real clock: today's budget
    return llm_record.load(store), live


def llm_summary(cfg: Config, mode: str, stand_in: RecordedLLM | None) -> dict:
    """The summary's ``llm`` (and, when the advisor was left out, its ``advisors`` and ``skipped_advisors``)."""
    if stand_in is not None:
        return {"llm": stand_in.summary(mode)}
    return {
        "advisors": [a for a in cfg.advisors if a != "llm"],
        "skipped_advisors": ["llm"] if "llm" in cfg.advisors else [],
        "llm": {"mode": mode if "llm" in cfg.advisors else "not configured"},
    }
