"""[scoreboard] in bot.toml: read strictly, like every table."""

from __future__ import annotations

import pytest

from helpers.configs import PAPER_TOML

from tinybot.base import config
from tinybot.base.errors import ConfigError


def _load(tmp_path, extra: str):
    p = tmp_path / "bot.toml"
    p.write_text(PAPER_TOML + extra)
    return config.load(p)


def test_shadow_advisors_are_read(tmp_path):
    assert _load(tmp_path, '[scoreboard]\nshadow = ["llm", "rules"]\n').scoreboard.shadow == ("llm", "rules")
    assert _load(tmp_path, "").scoreboard.shadow == ()


@pytest.mark.parametrize(
    "value, message",
    [
        ('["gpt"]', "scoreboard.shadow: 'gpt' is not an advisor that can run in the shadows"),
        ('["top_up"]', "scoreboard.shadow: 'top_up' is not an advisor that can run in the shadows"),
        ('["rules", "rules"]', "scoreboard.shadow: 'rules' is listed twice"),
    ],
)
def test_a_wrong_shadow_names_the_key_and_the_fix(tmp_path, value, message):
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, f"[scoreboard]\nshadow = {value}\n")


def test_an_unknown_scoreboard_key_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="scoreboard.shadows: unknown key"):
        _load(tmp_path, '[scoreboard]\nshadows = ["llm"]\n')


def test_knowledge_cutoff_is_a_date(tmp_path):
    assert _load(tmp_path, '[llm]\nknowledge_cutoff = "2024-10-01"\n').llm.knowledge_cutoff == "2024-10-01"
    for bad in ("2024-13-01", "Oct 2024", "2024-10"):
        with pytest.raises(ConfigError, match=f"llm.knowledge_cutoff: '{bad}' is not a date"):
            _load(tmp_path, f'[llm]\nknowledge_cutoff = "{bad}"\n')
