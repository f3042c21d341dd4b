"""What an idle `tinybot telegram` costs: resident memory and CPU, against the local fake Bot API over TLS.

    python bench/telegram_footprint.py                # 25 s long polls, 75 s idle window
    python bench/telegram_footprint.py --idle 30 --poll 10

It starts tests/helpers/fake_telegram.py in this process behind HTTPS (a throwaway
self-signed certificate, trusted by the child through SSL_CERT_FILE, so the
child loads OpenSSL exactly as it does against api.telegram.org), starts
`tinybot telegram` as a child process, has it serve a proposal, a tap and
every command once (so everything it would ever import is loaded), then
leaves it idle and reads /proc: VmRSS / VmHWM / RssAnon, and user+system CPU
over the idle window.  Baselines in the same run: `python -c pass` and
`python -c "import ssl, sqlite3"`.  Needs Linux and the openssl command.
"""

from __future__ import annotations

import argparse
import os
import ssl
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from helpers.fake_telegram import FakeTelegram  # noqa: E402

OWNER = 111


def proc_kib(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "Threads"):
            out[key] = int(rest.split()[0])
    return out


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def baseline(code: str, env: dict) -> int:
    """VmRSS (KiB) of a python that ran ``code`` and then waits."""
    p = subprocess.Popen(
        [sys.executable, "-c", code + "\nimport sys; sys.stdin.read()"], stdin=subprocess.PIPE, env=env
    )
    try:
        time.sleep(1.0)
        return proc_kib(p.pid)["VmRSS"]
    finally:
        p.kill()
        p.wait()


IN_RUN_CHILD = r"""
import sys, re
from tinybot.owner.telegram import poller
from tinybot.base import config; from tinybot.cli import run                           # what `tinybot run` has loaded ...
from tinybot.loop import scheduler
from tinybot.exchange.bitvavo import clients               # ... ccxt included (live mode)
clients.read_only_client(config.load())                    # builds the ccxt client; connects to nothing
def rss():
    return int(re.search(r"VmRSS:\s+(\d+)", open("/proc/self/status").read()).group(1))
bg = None
for line in sys.stdin:
    cmd = line.strip()
    if cmd == "start":
        bg = poller.Background(config.load()).start()
    elif cmd == "stop":
        bg.stop()
        break
    print(rss(), flush=True)
"""


def in_run(env: dict, fake: FakeTelegram, idle: float) -> tuple[int, int, int]:
    """VmRSS (KiB) of a process with `tinybot run`'s imports (ccxt too): before the loop, serving, idle."""
    child = subprocess.Popen(
        [sys.executable, "-c", IN_RUN_CHILD], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )

    def ask(cmd: str) -> int:
        child.stdin.write(cmd + "\n")
        child.stdin.flush()
        return int(child.stdout.readline())

    try:
        before = ask("rss")
        calls = len(fake.calls)
        ask("start")
        assert fake.wait_for(lambda f: f.methods()[calls:].count("getUpdates") >= 2, 30), "the thread never polled"
        sent = len(fake.texts())
        fake.send_text(OWNER, "/status")
        fake.send_text(OWNER, "/proposals")
        assert fake.wait_for(lambda f: len(f.texts()) >= sent + 2, 30), "the thread did not answer"
        time.sleep(2.0)
        serving = ask("rss")
        time.sleep(idle)
        after = ask("rss")
        child.stdin.write("stop\n")
        child.stdin.flush()
        child.wait(timeout=30)
    finally:
        child.kill()
        child.wait()
    return before, serving, after


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--idle", type=float, default=75.0, help="idle window, seconds")
    ap.add_argument("--poll", type=int, default=25, help="telegram.poll_timeout, seconds")
    ap.add_argument("--in-run-idle", type=float, default=30.0, help="idle window of the in-`tinybot run` part")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tinybot-tg-footprint-"))
    cert, key = work / "cert.pem", work / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    fake = FakeTelegram(max_poll=50)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    fake.server.socket = ctx.wrap_socket(fake.server.socket, server_side=True)
    fake.start()
    url = fake.url.replace("http://", "https://")
    (work / "bot.toml").write_text(
        'mode = "paper"\n[risk]\nallowlist = ["BTC-EUR"]\n[paper]\nprices = { "BTC-EUR" = "60000" }\n'
        f'[scheduler]\napproval = "manual"\n[telegram]\nchat_ids = [{OWNER}]\napi_url = "{url}"\n'
        f'poll_timeout = "{args.poll}s"\n'
    )
    env = {
        **os.environ,
        "TINYBOT_CONFIG": str(work / "bot.toml"),
        "TINYBOT_TELEGRAM_TOKEN": fake.token,
        "SSL_CERT_FILE": str(cert),
        "PYTHONPYCACHEPREFIX": str(work / "pycache"),
    }
    # as on a Pi after `pip install`: modules load from compiled bytecode, not compiled at each start
    # (PYTHONDONTWRITEBYTECODE would make every import compile its source, and count the compiler's memory)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import tinybot.cli, tinybot.cli.telegram, tinybot.owner.telegram.poller, tinybot.analysis.status,"
            " tinybot.trade.proposals, tinybot.trade.killswitch, tinybot.exchange.static, tinybot.store.backup, ssl,"
            " http.client",
        ],
        env=env,
        check=True,
    )
    subprocess.run([sys.executable, "-m", "tinybot", "init"], env=env, check=True, capture_output=True)
    child = subprocess.Popen(
        [sys.executable, "-m", "tinybot", "telegram"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert fake.wait_for(lambda f: "getUpdates" in f.methods(), 30), "the loop never polled"
        at_start = proc_kib(child.pid)
        # exercise everything once: a proposal announced with its pre-check, a tap, every command
        from tinybot.base import config
        from tinybot.store import db
        from tinybot.trade import proposals

        cfg = config.load(work / "bot.toml")
        conn = db.open_db(cfg.db_path)
        pid = proposals.create(
            conn,
            proposals.Draft("BTC-EUR", "buy", amount_quote="6", reason="footprint"),
            source="cli",
            ttl=timedelta(minutes=30),
        )
        for text in ("/status", "/pnl", "/proposals", f"/why {pid}", "/help"):
            fake.send_text(OWNER, text)
        assert fake.wait_for(lambda f: any(t.startswith(f"Proposal #{pid}") for t in f.texts()), 60)
        chat, mid = next(k for k, m in fake.messages.items() if m["text"].startswith(f"Proposal #{pid}"))
        fake.tap(chat, mid, fake.button(chat, mid, "Approve"))
        assert fake.wait_for(lambda f: len(f.answers) == 1, 30)
        fake.send_text(OWNER, "/kill footprint run")
        assert fake.wait_for(lambda f: any(t.startswith("Trading DISABLED") for t in f.texts()), 30)
        conn.close()
        time.sleep(1.0)
        busy = proc_kib(child.pid)
        cpu0, t0, polls0 = cpu_seconds(child.pid), time.monotonic(), fake.methods().count("getUpdates")
        time.sleep(args.idle)
        cpu1, t1, polls1 = cpu_seconds(child.pid), time.monotonic(), fake.methods().count("getUpdates")
        idle = proc_kib(child.pid)
    finally:
        child.terminate()
        _, err = child.communicate(timeout=30)
    (work / "bot.toml").write_text(
        (work / "bot.toml").read_text().replace('mode = "paper"', 'mode = "live"')
        + '[exchange]\noperator_id = 1\nurl = "http://127.0.0.1:9"\n'
    )
    try:
        run_before, run_serving, run_after = in_run(env, fake, args.in_run_idle)
    finally:
        fake.close()
    bare = baseline("pass", env)
    tls = baseline("import ssl, sqlite3, json, http.client", env)
    status = baseline("import tinybot.cli, tinybot.analysis.status", env)  # what `tinybot status` loads
    mib = lambda k: f"{k / 1024:.1f} MiB"  # noqa: E731
    print(f"tinybot telegram, polling, before any update: VmRSS {mib(at_start['VmRSS'])}")
    print(f"after serving a proposal, a tap and every command: VmRSS {mib(busy['VmRSS'])}")
    print(
        f"after {t1 - t0:.0f} s idle ({polls1 - polls0} long polls of {args.poll} s): VmRSS {mib(idle['VmRSS'])}"
        f" (RssAnon {mib(idle['RssAnon'])}, RssFile {mib(idle['RssFile'])}), peak VmHWM {mib(idle['VmHWM'])},"
        f" threads {idle['Threads']}"
    )
    print(
        f"CPU while idle: {cpu1 - cpu0:.2f} s user+system over {t1 - t0:.0f} s"
        f" = {100 * (cpu1 - cpu0) / (t1 - t0):.3f} % of one core"
    )
    print(f"baselines: python -c pass {mib(bare)}; python + ssl, sqlite3, json, http.client {mib(tls)}")
    print(f"baseline: python with tinybot's CLI and status loaded (what `tinybot status` imports) {mib(status)}")
    print(
        f"the Telegram loop above bare python: {mib(idle['VmRSS'] - bare)};"
        f" above python with TLS and SQLite loaded: {mib(idle['VmRSS'] - tls)};"
        f" above `tinybot status`'s imports: {mib(idle['VmRSS'] - status)}"
    )
    print(f"child exit code {child.returncode}; token in its output: {fake.token in err}")
    print(
        f"inside `tinybot run` (scheduler + ccxt loaded: {mib(run_before)}): the Telegram thread adds"
        f" {mib(run_serving - run_before)} after serving, {mib(run_after - run_before)} after"
        f" {args.in_run_idle:.0f} s more idle"
    )


if __name__ == "__main__":
    main()
