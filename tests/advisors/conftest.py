"""The advisors' room: a fake OpenAI-compatible server and an llm setup on it, for the llm tests."""

from __future__ import annotations

import pytest

from helpers.fake_openai import FakeOpenAI
from helpers.llm import TOML
from tinybot.advisors import llm
from tinybot.store import db


@pytest.fixture
def fake():
    with FakeOpenAI() as f:
        yield f


@pytest.fixture
def setup(write_config, fake):
    def make(daily="0.05", timeout="5s", base_url=None):
        cfg = write_config(TOML.format(base_url=base_url or fake.base_url, daily=daily, timeout=timeout))
        conn = db.open_db(cfg.db_path)
        return cfg, conn

    llm._told_disabled.clear()
    return make
