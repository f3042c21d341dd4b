"""Head to head over history (`replay --score --advisors rules,dca,llm`): each advisor a shadow in one pass.

In one replay over the same candles, every advisor named runs as a shadow
(tinybot.trade.shadow): its own virtual book with the replay's starting EUR
and the same caps, filled on paper at the next tick's price.  No advisor
trades live, so none takes room under the caps from another.  The board is
`tinybot score`'s (tinybot.analysis.score) over the scratch database.

The llm advisor answers from the LLM record.  A model "knows" the history it
was trained on: a period that starts before ``[llm] knowledge_cutoff`` is
look-ahead, refused unless the owner allows it, and then marked as such on
the board and on the llm's row.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone

from ...analysis import score
from ...base import clock
from ...base.config import KNOWN_ADVISORS, Config
from .plan import ReplayError


def parse_advisors(text: str) -> tuple[str, ...]:
    """'rules,dca,llm' → the names, each an advisor a shadow can be; a clear error otherwise."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise ReplayError("--advisors: name at least one advisor, like rules,dca,llm")
    for n in names:
        if n == "top_up" or (n not in KNOWN_ADVISORS and ":" not in n):
            raise ReplayError(
                f"--advisors: {n!r} is not an advisor to score (rules, dca, llm, exits or module:function)"
            )
    if len(set(names)) != len(names):
        raise ReplayError("--advisors: an advisor is named twice")
    return names


def score_config(cfg: Config, advisors: tuple[str, ...]) -> Config:
    """The replay's config with no live advisor and each named advisor a shadow."""
    return dataclasses.replace(cfg, advisors=(), scoreboard=dataclasses.replace(cfg.scoreboard, shadow=advisors))


def look_ahead(cfg: Config, advisors: tuple[str, ...], start: datetime, allow: bool, llm_mode: str) -> bool:
    """Whether the llm is scored over a period its model may have seen; refuses that unless ``allow``."""
    if "llm" not in advisors:
        return False
    if llm_mode == "off":
        raise ReplayError("--advisors names llm but --llm off leaves it out: drop llm from --advisors, or --llm record")
    cutoff = cfg.llm.knowledge_cutoff
    if cutoff is None:
        raise ReplayError(
            "[llm] knowledge_cutoff is required to score the llm advisor in replay: set it in bot.toml to the"
            ' model\'s training cutoff, e.g. knowledge_cutoff = "2024-10-01" (a model scores itself well on the'
            " past it memorised)"
        )
    before = start < datetime.fromisoformat(cutoff).replace(tzinfo=timezone.utc)
    if before and not allow:
        raise ReplayError(
            f"the replay starts {clock.to_iso(start)[:10]}, before [llm] knowledge_cutoff {cutoff}: the model may have"
            " seen this period in training (look-ahead); replay from after the cutoff, or pass --allow-look-ahead"
            " and every figure is marked look-ahead"
        )
    return before


def board(conn, cfg: Config, markets: tuple[str, ...], until: datetime, ahead: bool) -> dict:
    """`tinybot score`'s board over the replay's scratch database, look-ahead marked on the board and llm's row."""
    rcfg = dataclasses.replace(cfg, mode="live", risk=dataclasses.replace(cfg.risk, allowlist=tuple(markets)))
    return score.mark_look_ahead(score.scoreboard(conn, rcfg, until=until), ahead)
