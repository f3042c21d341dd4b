"""What one execute() costs in SQL, counted (never timed): the same statements, and no more rows read, after a long
history as on the first day (issue 26).  A query that scans what grows (every filled execution ever, every fill
ever) shows here as VM steps that grow with the history."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from freezegun import freeze_time

from helpers.configs import paper_setup
from helpers.sqlcost import counted, seed_history
from tinybot.base import clock
from tinybot.trade import executor, proposals
from tinybot.trade.proposals import Draft

T0 = "2026-11-27 12:00:00"
STATEMENTS_PER_EXECUTE = (
    53  # a buy today: claim (+ the proposals_open trigger), commit (17 guard records, cooldown and anti-flip), record
)


def execute_cost(write_config, folder, history: int):
    folder.mkdir()
    cfg, conn, ex = paper_setup(lambda text: write_config(text, name=f"{folder.name}/bot.toml"))
    if history:
        seed_history(conn, history, until=clock.now() - timedelta(days=2))
    pid = proposals.create(
        conn, Draft("BTC-EUR", "buy", Decimal("6"), None, "test"), source="test", ttl=timedelta(hours=1), approve=True
    )
    with counted(conn) as cost:
        result = executor.execute(conn, cfg, ex, pid)
    assert result.state == "filled", result
    ex.close()
    conn.close()
    return cost


@freeze_time(T0)
def test_execute_reads_no_more_after_a_long_history_than_on_its_first_day(write_config, tmp_path):
    first = execute_cost(write_config, tmp_path / "first", 0)
    later = execute_cost(write_config, tmp_path / "later", 3000)  # a year and more at 8 trades a day
    assert len(later.statements) == len(first.statements) <= STATEMENTS_PER_EXECUTE, later.statements
    assert later.steps <= 1.2 * first.steps, (first.steps, later.steps)
