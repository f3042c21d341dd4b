"""``tinybot sim``: run the Bitvavo simulator in the foreground until Ctrl-C."""

from __future__ import annotations

import signal
import threading
from decimal import Decimal, InvalidOperation

import click

from ..base.clock import parse_duration
from ..sim.accounts import PERMISSIONS, SimAccount
from ..sim.faults import parse_fault_spec
from ..sim.market import INTERVALS
from ..sim.simulator import Simulator


def _parse_balance(value: str) -> tuple[str | None, dict[str, Decimal]]:
    """``[KEY:]ASSET=AMOUNT[,ASSET=AMOUNT...]`` → (key or None, balances)."""
    key, sep, rest = value.rpartition(":")
    key = key if sep else None
    out: dict[str, Decimal] = {}
    for item in rest.split(","):
        asset, eq, amount = item.partition("=")
        asset = asset.strip().upper()
        try:
            amt = Decimal(amount.strip())
        except InvalidOperation:
            amt = None
        if not eq or not asset.isalnum() or amt is None or not amt.is_finite() or amt < 0:
            raise click.BadParameter(f"{value!r} is not [KEY:]ASSET=AMOUNT, e.g. EUR=25", param_hint="'--balance'")
        out[asset] = amt
    return key, out


def _owners(args: list[str]) -> dict[str, list[int]]:
    """For each --secret/--permissions/--balance occurrence, the index of the --key before it.

    click hands repeated options over as separate tuples and forgets how they
    interleave, so the raw argv is scanned once for that.
    """
    owners: dict[str, list[int]] = {"--secret": [], "--permissions": [], "--balance": [], "--account": []}
    current = -1
    for token in args:
        if token == "--":
            break
        name = token.split("=", 1)[0]
        if name == "--key":
            current += 1
        elif name in owners:
            owners[name].append(max(current, 0))
    return owners


class _AccountsCommand(click.Command):
    def parse_args(self, ctx, args):
        ctx.meta["tinybot.sim.owners"] = _owners(list(args))
        return super().parse_args(ctx, args)


def build_accounts(keys, secrets, permissions, balances, owners=None, account_names=()) -> list[SimAccount]:
    """Each --key starts an account; --secret/--permissions/--balance/--account after it belong to it.

    Keys that name the same --account share one account (balances, orders, trades), as the
    API keys of one Bitvavo account do; its balances come from the --balance of its keys.
    """
    if not keys:
        if secrets or permissions or account_names:
            raise click.BadParameter("give --key before its --secret/--permissions/--account", param_hint="'--key'")
        keys, secrets = ("sim-key",), ("sim-secret",)
        owners = {"--secret": [0], "--permissions": [], "--balance": [0] * len(balances), "--account": []}
    if owners is None:  # called from Python without argv: pair in order
        owners = {
            "--secret": list(range(len(secrets))),
            "--permissions": list(range(len(permissions))),
            "--balance": [0] * len(balances),
            "--account": list(range(len(account_names))),
        }
    if len(set(keys)) != len(keys):
        raise click.BadParameter("each --key must be different", param_hint="'--key'")
    n = len(keys)
    secret_of = _secrets_of(keys, owners, secrets)
    perms_of = _permissions_of(owners, permissions)
    balances_of = _balances_of(keys, owners, balances)
    account_of = _accounts_of(keys, owners, account_names)
    if not balances:
        balances_of = {i: {"EUR": Decimal("25")} for i in range(n)}
    # The balances of a shared account sit on its first key (the simulator's rule); merge them there.
    first: dict[str, int] = {}
    for i in range(n):
        name = account_of.get(i)
        if name is None:
            continue
        if name not in first:
            first[name] = i
        elif balances:
            balances_of[first[name]].update(balances_of[i])
            balances_of[i] = {}
        else:
            balances_of[i] = {}
    return [
        SimAccount(
            keys[i],
            secret_of[i],
            perms_of.get(i, frozenset({"view", "trade"})),
            balances_of[i],
            account=account_of.get(i, ""),
        )
        for i in range(n)
    ]


def _faults(ctx, param, values):
    try:
        return [parse_fault_spec(v) for v in values]
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


def _skew(ctx, param, value):
    """``30s``, ``-2m``, ``500ms`` → seconds (the simulator's clock runs that far ahead of ours)."""
    if value in (None, "", "0"):
        return 0.0
    sign = -1 if value.startswith("-") else 1
    try:
        return sign * parse_duration(value.lstrip("+-")).total_seconds()
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


def _unsettled(ctx, param, value):
    if value is None or value == "manual":
        return value
    try:
        return parse_duration(value).total_seconds()
    except ValueError:
        raise click.BadParameter(f"{value!r}: use a duration like 5s (fees settle after it) or 'manual'") from None


def _markets(ctx, param, values):
    for m in values:
        if m.count("-") != 1 or not all(m.split("-")) or m != m.upper():
            raise click.BadParameter(f"{m!r} is not a Bitvavo market name like BTC-EUR")
    return values


@click.command(name="sim", cls=_AccountsCommand)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Loopback only: the /_sim/ admin endpoints have no authentication.",
)
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True, help="0 picks a free port.")
@click.option("--key", "keys", multiple=True, help="API key of an account (repeatable).")
@click.option("--secret", "secrets", multiple=True, help="Secret of the --key before it.")
@click.option(
    "--permissions",
    multiple=True,
    metavar="LIST",
    help="Comma list of view,trade,withdraw for the --key before it (default view,trade).",
)
@click.option(
    "--account",
    "account_names",
    multiple=True,
    metavar="NAME",
    help="Account of the --key before it: keys naming the same account share balances, orders, trades.",
)
@click.option(
    "--balance",
    "balances",
    multiple=True,
    metavar="[KEY:]ASSET=AMOUNT[,...]",
    help="Starting balance of the --key before it (or of KEY:), repeatable. "
    "Default EUR=25 for every key when no --balance is given.",
)
@click.option(
    "--market",
    "markets",
    multiple=True,
    callback=_markets,
    help="Market to list (repeatable). Default BTC-EUR and ETH-EUR.",
)
@click.option("--seed", type=int, default=7, show_default=True, help="Seed of the synthetic price walk.")
@click.option(
    "--interval",
    type=click.Choice(list(INTERVALS)),
    default="1m",
    show_default=True,
    help="One price-path step = one candle of this length.",
)
@click.option(
    "--candles-csv",
    type=click.Path(exists=True, dir_okay=False),
    help="CSV with header market,timestamp,open,high,low,close,volume to replay.",
)
@click.option(
    "--step-every",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    metavar="SECONDS",
    help="Advance the price path every SECONDS wall-clock seconds (0 = only via /_sim/advance).",
)
@click.option(
    "--fault",
    "faults",
    multiple=True,
    callback=_faults,
    metavar="ON:KIND[:OPTS]",
    help="Arm a fault at start, e.g. create_order:timeout_after_accept:count=1,delay=5 (repeatable).",
)
@click.option(
    "--find-closed-by-client-id/--no-find-closed-by-client-id",
    default=False,
    show_default=True,
    help="Whether GET /order?clientOrderId= still finds filled/canceled orders (Bitvavo's websocket and FIX"
    " pages: open orders only; off by default, the hard case).",
)
@click.option(
    "--view-key-reads-orders",
    is_flag=True,
    help="Let a view-only key read orders and trades (Bitvavo: a Trade right; refused with 310 by default).",
)
@click.option(
    "--clock-skew",
    callback=_skew,
    default="0",
    metavar="DURATION",
    help="Run the exchange's clock this far ahead of this machine's (e.g. 30s, -2s).",
)
@click.option(
    "--rate-limit",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Weight per key (or IP) per wall-clock minute.",
)
@click.option(
    "--rate-limit-code",
    type=click.Choice(["110", "105"]),
    default="110",
    show_default=True,
    help="errorCode of the 429 over the rate limit (Bitvavo's documents give both).",
)
@click.option(
    "--trades-window",
    type=click.Choice(["refuse", "clamp"]),
    default="refuse",
    show_default=True,
    help="GET /trades spanning more than 24 h: refuse it (205) or cut it to 24 h.",
)
@click.option("--balance-zero-rows", is_flag=True, help="GET /balance also lists zero balances (as a 2023 recording).")
@click.option(
    "--unsettled-fills",
    callback=_unsettled,
    metavar="DURATION|manual",
    help="Fills come back settled=false without a fee until DURATION passed (or POST /_sim/settle).",
)
@click.option(
    "--candle-gaps",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.0,
    show_default=True,
    metavar="P",
    help="Share of new candles without trades (left out of answers, as Bitvavo does).",
)
@click.option(
    "--candle-revisions",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    metavar="N",
    help="The N newest closed candles change a little on every candles request.",
)
@click.option("--verbose", is_flag=True, help="Log every request to stderr.")
def sim_command(
    host,
    port,
    keys,
    secrets,
    permissions,
    account_names,
    balances,
    markets,
    seed,
    interval,
    candles_csv,
    step_every,
    faults,
    find_closed_by_client_id,
    view_key_reads_orders,
    clock_skew,
    rate_limit,
    rate_limit_code,
    trades_window,
    balance_zero_rows,
    unsettled_fills,
    candle_gaps,
    candle_revisions,
    verbose,
):
    """Run a local Bitvavo REST v2 simulator (for tests, demos and dry runs).

    Each --key starts an API key; the --secret, --permissions, --account and
    --balance options that follow it (until the next --key) belong to it. Keys
    naming the same --account share one account. Without any --key there is
    one account sim-key/sim-secret with EUR=25.

    It checks signatures, the access window, permissions, operatorId,
    clientOrderId and order limits like Bitvavo, fills orders against a
    seeded price path, and can inject faults. Stop it with Ctrl-C.

    \b
    Example:
      tinybot sim --port 8999 --key K --secret S --permissions view,trade \\
          --balance EUR=25 --balance BTC=0.001 \\
          --account me \\
          --key R --secret RS --permissions view --account me \\
          --step-every 5 --fault create_order:error_101:accept=false

    \b
    Point ccxt at it:
      ccxt.bitvavo({"apiKey": "K", "secret": "S",
                    "urls": {"api": {"public": URL, "private": URL}},
                    "options": {"operatorId": 1}})
    Runtime control: curl URL/_sim/state, POST URL/_sim/faults, ... (docs/SIMULATOR.md).
    """
    owners = click.get_current_context().meta.get("tinybot.sim.owners")
    accounts = build_accounts(keys, secrets, permissions, balances, owners, account_names)
    try:
        sim = Simulator(
            accounts=accounts,
            markets=markets or ("BTC-EUR", "ETH-EUR"),
            seed=seed,
            candles_csv=candles_csv,
            interval=interval,
            find_closed_by_client_id=find_closed_by_client_id,
            view_key_reads_orders=view_key_reads_orders,
            clock_skew=clock_skew,
            rate_limit=rate_limit,
            rate_limit_code=int(rate_limit_code),
            trades_window=trades_window,
            balance_zero_rows=balance_zero_rows,
            unsettled=unsettled_fills,
            candle_gaps=candle_gaps,
            candle_revisions=candle_revisions,
        )
        server = sim.serve(host=host, port=port, verbose=verbose)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    except OSError as e:
        raise click.ClickException(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    for fault in faults:
        sim.arm(fault)

    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())  # systemd/kill stop as cleanly as Ctrl-C
    # the server already answers: a Ctrl-C from here on (even while the lines below print) is a clean stop
    try:
        _announce(sim, server, accounts, clock_skew)
        while not stop.wait(step_every or 3600):
            if step_every:
                sim.advance(1)
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    click.echo("simulator stopped")


def _announce(sim, server, accounts, clock_skew) -> None:
    """The lines a person (or a test) reads once the simulator listens: its URL first."""
    click.echo(f"Bitvavo simulator listening on {server.url}", color=False)
    for a in accounts:
        bal = ", ".join(f"{k}={v}" for k, v in sim.balance(a.key).items() if v) or "nothing"
        shared = f" account {a.account}" if a.account else ""
        click.echo(f"  key {a.key} ({','.join(sorted(a.permissions))}){shared}: {bal}")
    if clock_skew:
        click.echo(f"  clock skew {clock_skew:+g}s")
    click.echo(f"  markets {', '.join(sim.markets)}; state at {server.url}/_sim/state; Ctrl-C stops")
    click.get_text_stream("stdout").flush()


def _secrets_of(keys, owners, secrets) -> dict[int, str]:
    secret_of: dict[int, str] = {}
    for i, value in zip(owners["--secret"], secrets):
        if i in secret_of:
            raise click.BadParameter(f"two secrets for key {keys[i]!r}", param_hint="'--secret'")
        secret_of[i] = value
    missing = [keys[i] for i in range(len(keys)) if i not in secret_of]
    if missing:
        raise click.BadParameter(f"no --secret for key {missing[0]!r}", param_hint="'--secret'")
    return secret_of


def _permissions_of(owners, permissions) -> dict[int, frozenset]:
    perms_of: dict[int, frozenset] = {}
    for i, value in zip(owners["--permissions"], permissions):
        chosen = frozenset(x.strip() for x in value.split(",") if x.strip())
        if not chosen or not chosen <= PERMISSIONS:
            raise click.BadParameter(
                f"{value!r}: use a comma list of {', '.join(sorted(PERMISSIONS))}", param_hint="'--permissions'"
            )
        perms_of[i] = chosen
    return perms_of


def _balances_of(keys, owners, balances) -> dict[int, dict[str, Decimal]]:
    balances_of: dict[int, dict[str, Decimal]] = {i: {} for i in range(len(keys))}
    for i, value in zip(owners["--balance"], balances):
        key, bal = _parse_balance(value)
        if key is not None:
            if key not in keys:
                raise click.BadParameter(f"{value!r} names key {key!r}, which no --key gives", param_hint="'--balance'")
            i = keys.index(key)
        balances_of[i].update(bal)
    return balances_of


def _accounts_of(keys, owners, account_names) -> dict[int, str]:
    account_of: dict[int, str] = {}
    for i, value in zip(owners.get("--account", []), account_names):
        if i in account_of:
            raise click.BadParameter(f"two --account names for key {keys[i]!r}", param_hint="'--account'")
        if not value.strip():
            raise click.BadParameter("an --account name must not be empty", param_hint="'--account'")
        account_of[i] = value.strip()
    return account_of
