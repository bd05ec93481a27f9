"""`warden bench fleet`: engine processes sharing accounts through PostgreSQL leases; one is
killed with kill -9 and the others take its accounts over.

Real processes: `warden sim serve --accounts N` (N simulated Binance USD-M accounts, one port
each, spoken to by unmodified ccxt) and `engines` x `warden run` over one TOML file with every
account, one PostgreSQL (the sessions of an engine's accounts shared), each engine
named and capped (`capacity` = the accounts divided among all engines but one, so the survivors
have room for the dead one's). Every account gets `positions` protected positions. Then the
engine holding the most accounts is killed, and from outside it is measured:

- takeover, per account: seconds from the kill until a surviving engine holds its lease and is
  `ready` (p50 / p99 / max);
- the exchanges' judgement: every exchange's position stays covered by resting stops throughout
  (sampled during the takeover; the simulator's own uncovered-stretch log for the whole run);
- one holder: no two engines ever say they hold one account;
- nothing lost: after the takeover every account's holder tracks all its positions;
- memory: each engine's resident size over the accounts it serves.

`freeze=True` (the e2e suite) stops the victim with SIGSTOP instead: its sessions stay open, as
a dead host's or a cut-off one's do, so the fleet runs with `lease_timeout` and takes its
accounts over once it has been silent that long. While it is stopped a survivor moves a stop
of each of its accounts (so the victim's memory is stale); then it is woken (SIGCONT) and must
stand down having sent nothing: every order request the exchanges took from then until it
stood down is named in `sent_after_wake`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from warden.bench.reconcile_bench import _drop_pg, _pg_url
from warden.bench.report import Result, percentile
from warden.chaos.procs import KEY, SECRET, Child, _free_port, _poll

TOKEN = "fleet-bench-token-0123456789"
GOAL_ACCOUNTS, GOAL_POSITIONS = 100, 20
TAKEOVER_GOAL = 10.0
"""Seconds from an engine's death until each of its accounts is held and ready elsewhere."""
PROTECTION_WINDOW = 2.0
READY_WITHIN = 180.0
SAMPLE_EVERY = 1.0
"""Seconds between samples of every exchange's cover during the takeover (the simulators' own
uncovered-stretch log sees every instant; the samples say it was seen live)."""
LOOK_EVERY = 0.1
"""Seconds between looks at who holds what during the takeover (the takeover's resolution)."""
COINS = (("SOL", "1"), ("ETH", "0.1"), ("BTC", "0.01"), *((f"S{i:03d}", "0.1") for i in range(7)))
"""The positions go round these (each simulated account lists them: `--markets`): the exchange rests at
most 10 stops and take-profits per symbol, so 20 positions of three orders each need seven symbols."""


@dataclass
class FleetRun:
    """What one run measured (the bench renders it; the e2e test asserts on it)."""

    engines: int
    accounts: int
    positions: int
    capacity: int
    opened_in: float = 0.0
    victim_held: list[str] = field(default_factory=list)
    takeover: dict[str, float] = field(default_factory=dict)
    double_held: list[str] = field(default_factory=list)
    uncovered_samples: list[str] = field(default_factory=list)
    longest_uncovered: float = 0.0
    tracked_after: dict[str, int] = field(default_factory=dict)
    rss_mb: list[float] = field(default_factory=list)
    base_rss_mb: float = 0.0
    problems: list[str] = field(default_factory=list)
    sent_after_wake: list[str] = field(default_factory=list)
    stood_down_after_wake: float | None = None


class _Fleet:
    def __init__(
        self, db: str, engines: int, accounts: int, capacity: int, logs: Path, lease_timeout: float | None
    ) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WARDEN_")}
        env |= {"PYTHONUNBUFFERED": "1", "FLEET_KEY": KEY, "FLEET_SECRET": SECRET}
        self.names = [f"a{i:03d}" for i in range(accounts)]
        base = consecutive_free_ports(accounts)
        self.sim_urls = {name: f"http://127.0.0.1:{base + i}" for i, name in enumerate(self.names)}
        args = ["sim", "serve", "--host", "127.0.0.1", "--port", str(base), "--accounts", str(accounts)]
        args += ["--markets", str(len(COINS))]
        self.sims = [Child("sim", [*args, "--seed", "1", "--price-interval", "0"], env, logs)]
        tables = "".join(
            f'\n[accounts.{name}]\nexchange = "binanceusdm"\nexchange_url = "{url}"\n'
            'api_key_env = "FLEET_KEY"\napi_secret_env = "FLEET_SECRET"\n'
            for name, url in self.sim_urls.items()
        )
        config = logs / "fleet.toml"
        config.write_text(
            f'db = "{db}"\napi_token = "{TOKEN}"\nallow_stacking = true\nlog_level = "warning"\n'
            f"capacity = {capacity}\n"
            + (f"lease_timeout = {lease_timeout}\n" if lease_timeout is not None else "")
            + tables
        )
        self.api_urls: list[str] = []
        self.engines: list[Child] = []
        for e in range(engines):
            port = _free_port()
            self.api_urls.append(f"http://127.0.0.1:{port}")
            args = ["run", "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
            args += ["--engine-name", f"engine-{e}", "--data-dir", str(logs / f"data-{e}")]
            self.engines.append(Child(f"engine-{e}", args, env, logs))
        # The same engine serving one account (a standby for it): the base the others are measured on.
        self.base_url = f"http://127.0.0.1:{_free_port()}"
        args = [
            "run",
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            self.base_url.rsplit(":", 1)[1],
        ]
        args += ["--account", self.names[0], "--engine-name", "base", "--data-dir", str(logs / "data-base")]
        self.base = Child("engine-base", args, env, logs)
        self.http = httpx.Client(timeout=30.0, headers={"Authorization": f"Bearer {TOKEN}"})
        self.logs = logs

    def close(self) -> None:
        for child in [*self.engines, self.base, *self.sims]:
            with contextlib.suppress(Exception):
                child.kill9()
        self.http.close()

    def accounts_of(self, e: int) -> list[dict[str, Any]]:
        response = self.http.get(f"{self.api_urls[e]}/api/v1/accounts", timeout=5)
        response.raise_for_status()
        listed: list[dict[str, Any]] = response.json()
        return listed

    def holders(self, alive: list[int]) -> dict[str, list[int]]:
        """Account -> the engines (of `alive`) that say they hold it and are ready."""
        held: dict[str, list[int]] = {name: [] for name in self.names}
        for e in alive:
            for a in self.accounts_of(e):
                if a["lease_held"] and a["state"] == "ready":
                    held[a["name"]].append(e)
        return held

    def sim_state(self, name: str) -> dict[str, Any]:
        response = self.http.get(f"{self.sim_urls[name]}/sim/state", timeout=10)
        response.raise_for_status()
        state: dict[str, Any] = response.json()
        return state

    def uncovered(self) -> list[str]:
        """Exchanges' positions without a covering stop right now (the simulators' own view)."""
        found = []
        for name in self.names:
            for e in self.sim_state(name)["exposure"]:
                if e["unprotected_seconds"] > 0:
                    found.append(f"{name} {e['symbol']} uncovered {e['unprotected_seconds']:.2f} s")
        return found

    def base_rss_mb(self) -> float:
        """The resident size of an engine serving one account (a standby for it), once it answers."""
        self.base.start()
        _poll(
            lambda: self.http.get(f"{self.base_url}/api/v1/accounts", timeout=5).is_success,
            READY_WITHIN,
            "base",
        )
        try:
            return self.rss_mb(self.base)
        finally:
            self.base.kill9()

    def rss_mb(self, child: Child) -> float:
        popen = child.popen
        assert popen is not None
        for line in Path(f"/proc/{popen.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0


def consecutive_free_ports(n: int) -> int:
    """The first of `n` consecutive ports free on 127.0.0.1 (one simulator process serves them)."""
    for _attempt in range(50):
        base = _free_port()
        if base + n > 65535:
            continue
        sockets = []
        try:
            for port in range(base, base + n):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
        return base
    raise RuntimeError(f"no {n} consecutive free ports on 127.0.0.1")


FREEZE_LEASE_TIMEOUT = 10.0
"""The fleet's `lease_timeout` in the freeze run (the least the settings take)."""


def fleet_run(
    engines: int, accounts: int, positions: int, db: str, say: Callable[[str], None], freeze: bool = False
) -> FleetRun:
    """Start the fleet on `db`, open, kill (or freeze) the busiest engine, measure; every process
    is killed after."""
    if engines < 2:
        raise ValueError("a fleet that loses an engine needs at least 2")
    capacity = math.ceil(accounts / (engines - 1))
    run = FleetRun(engines, accounts, positions, capacity)
    logs = Path(tempfile.mkdtemp(prefix="warden-bench-fleet-"))
    fleet = _Fleet(db, engines, accounts, capacity, logs, FREEZE_LEASE_TIMEOUT if freeze else None)
    try:
        _start(fleet, say)
        _open(fleet, run, say)
        victim = _kill_and_take_over(fleet, run, say, freeze)
        if freeze:
            _wake(fleet, run, victim, say)
    except Exception as exc:
        run.problems.append(f"{type(exc).__name__}: {exc} (logs in {logs})")
        return run
    finally:
        fleet.close()
    shutil.rmtree(logs, ignore_errors=True)
    return run


def _start(fleet: _Fleet, say: Callable[[str], None]) -> None:
    for sim in fleet.sims:
        sim.start()
    for name in fleet.names:
        _poll(lambda n=name: fleet.sim_state(n), READY_WITHIN, f"the simulator of {name}")  # type: ignore[misc]
    # The first engine migrates the database alone; then the others start together.
    fleet.engines[0].start()
    _poll(lambda: fleet.accounts_of(0), READY_WITHIN, "the first engine's API")
    for engine in fleet.engines[1:]:
        engine.start()
    everyone = list(range(len(fleet.engines)))

    def all_held() -> bool:
        for e, engine in enumerate(fleet.engines):
            if not engine.alive():
                raise RuntimeError(f"engine {e} exited; see {fleet.logs}")
        return all(len(h) == 1 for h in fleet.holders(everyone).values())

    started = time.monotonic()
    _poll(all_held, READY_WITHIN, "every account held by one ready engine", every=0.2)
    say(f"fleet: every account held and ready {time.monotonic() - started:.1f} s after the engines started")


def _open(fleet: _Fleet, run: FleetRun, say: Callable[[str], None]) -> None:
    holder = {name: engines[0] for name, engines in fleet.holders(list(range(run.engines))).items()}

    def open_all(name: str) -> list[str]:
        problems = []
        url = fleet.api_urls[holder[name]]
        for i in range(run.positions):
            coin, qty = COINS[i % len(COINS)]
            body = {"account": name, "symbol": coin, "side": "long", "qty": qty}
            response = fleet.http.post(f"{url}/api/v1/signals", json=body)
            if response.status_code not in (201, 202):  # 202: accepted, its exits still on their way
                problems.append(f"{name} signal {i}: {response.status_code} {response.text[:200]}")
        return problems

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        for problems in pool.map(open_all, fleet.names):
            run.problems.extend(problems)
    run.opened_in = time.monotonic() - started
    _poll(lambda: not fleet.uncovered(), 30, "every position covered on its exchange")
    say(f"fleet: {run.accounts * run.positions} positions opened and protected in {run.opened_in:.1f} s")


def _kill_and_take_over(fleet: _Fleet, run: FleetRun, say: Callable[[str], None], freeze: bool) -> int:
    everyone = list(range(run.engines))
    held = fleet.holders(everyone)
    load = {e: [name for name, h in held.items() if h == [e]] for e in everyone}
    victim = max(everyone, key=lambda e: len(load[e]))
    run.victim_held = load[victim]
    run.rss_mb = [fleet.rss_mb(fleet.engines[e]) for e in everyone]
    run.base_rss_mb = fleet.base_rss_mb()
    survivors = [e for e in everyone if e != victim]
    killed = time.monotonic()
    if freeze:
        fleet.engines[victim].signal(signal.SIGSTOP)
    else:
        fleet.engines[victim].kill9()
    how = "stopped with SIGSTOP" if freeze else "killed with kill -9"
    say(f"fleet: engine-{victim} (holding {len(run.victim_held)} accounts) {how}")
    sampled = 0.0
    while len(run.takeover) < len(run.victim_held):
        now = time.monotonic() - killed
        if now > READY_WITHIN:
            missing = sorted(set(run.victim_held) - set(run.takeover))
            raise TimeoutError(f"not taken over within {READY_WITHIN:g} s: {missing}")
        for name, engines in fleet.holders(survivors).items():
            if len(engines) > 1:
                run.double_held.append(f"{name} held by engines {engines} at {now:.2f} s")
            if engines and name in run.victim_held and name not in run.takeover:
                run.takeover[name] = now
        if now - sampled >= SAMPLE_EVERY:  # every exchange, about once a second (it takes a while)
            run.uncovered_samples.extend(fleet.uncovered())
            sampled = now
        time.sleep(LOOK_EVERY)  # each look lists every account of every survivor: not in a spin
    run.uncovered_samples.extend(fleet.uncovered())
    say(f"fleet: every account of engine-{victim} taken over within {max(run.takeover.values()):.2f} s")
    for name, engines in fleet.holders(survivors).items():
        if len(engines) != 1:
            run.problems.append(f"{name}: held by {len(engines)} engines after the takeover")
            continue
        response = fleet.http.get(f"{fleet.api_urls[engines[0]]}/api/v1/positions", params={"account": name})
        response.raise_for_status()
        run.tracked_after[name] = len(response.json())
    for name in fleet.names:
        for e in fleet.sim_state(name)["exposure"]:
            run.longest_uncovered = max(run.longest_uncovered, float(e["max_unprotected_seconds"]))
    return victim


ORDER_METHODS = ("POST", "PUT", "DELETE")


def _wake(fleet: _Fleet, run: FleetRun, victim: int, say: Callable[[str], None]) -> None:
    """The frozen victim's accounts are held elsewhere: move a stop of each there (the victim's
    memory goes stale), wake the victim, and see it stand down having sent nothing."""
    holders = fleet.holders([e for e in range(run.engines) if e != victim])
    for name in run.victim_held:
        url = fleet.api_urls[holders[name][0]]
        listed = fleet.http.get(f"{url}/api/v1/positions", params={"account": name})
        listed.raise_for_status()
        first = listed.json()[0]
        tighter = f"{float(first['stop_price']) * 1.005:.4f}"  # a long's stop, still below the mark
        moved = fleet.http.patch(
            f"{url}/api/v1/positions/{first['id']}", params={"account": name}, json={"stop_price": tighter}
        )
        if moved.status_code != 200:
            run.problems.append(f"{name}: moving a stop answered {moved.status_code} {moved.text[:200]}")
    last = {name: max((r["at"] for r in _requests(fleet, name)), default=0) for name in run.victim_held}
    woken = time.monotonic()
    fleet.engines[victim].signal(signal.SIGCONT)

    def stood_down() -> bool:
        return not any(a["lease_held"] for a in fleet.accounts_of(victim))

    _poll(stood_down, 30, f"engine-{victim} to stand down once woken", every=0.05)
    run.stood_down_after_wake = time.monotonic() - woken
    for name in run.victim_held:
        for r in _requests(fleet, name):
            if r["at"] > last[name] and r["method"] in ORDER_METHODS and "order" in r["path"].lower():
                run.sent_after_wake.append(
                    f"{name}: {r['method']} {r['path']} {r['status']} {r['query'][:120]}"
                )
    say(
        f"fleet: engine-{victim} woken, stood down in {run.stood_down_after_wake:.2f} s;"
        f" order requests taken by the exchanges since: {len(run.sent_after_wake)}"
    )


def _requests(fleet: _Fleet, name: str) -> list[dict[str, Any]]:
    response = fleet.http.get(f"{fleet.sim_urls[name]}/sim/requests", timeout=10)
    response.raise_for_status()
    found: list[dict[str, Any]] = response.json()
    return found


def bench_fleet(engines: int = 4, accounts: int = GOAL_ACCOUNTS, positions: int = GOAL_POSITIONS) -> Result:
    result = Result(
        f"fleet: {engines} engine processes, {accounts} accounts x {positions} positions "
        "(binanceusdm via ccxt to `warden sim serve --accounts`; PostgreSQL), kill -9 of one"
    )
    goal = (
        f"goal: {GOAL_ACCOUNTS} accounts x {GOAL_POSITIONS} positions, each taken over within "
        f"{TAKEOVER_GOAL:g} s (p99), one holder, no position uncovered or lost"
    )
    db = asyncio.run(_pg_url())
    if db is None:
        result.verdict = f"{goal}: NOT met (PostgreSQL unavailable)"
        return result
    try:
        run = fleet_run(engines, accounts, positions, db, lambda line: None)
    finally:
        asyncio.run(_drop_pg(db))
    return render(run, result, goal)


def bench_fleet_host_death(engines: int = 3, accounts: int = 6, positions: int = 3) -> Result:
    """The fleet with `lease_timeout`: the busiest engine frozen (SIGSTOP: its sessions stay open,
    as a dead host's do), its accounts taken over once it has been silent for the timeout, then
    woken with stale memory (a survivor moved a stop of each of its accounts meanwhile)."""
    result = Result(
        f"fleet, host death: {engines} engine processes, {accounts} accounts x {positions} positions,"
        f" lease_timeout {FREEZE_LEASE_TIMEOUT:g} s, SIGSTOP of one, woken after the takeover"
    )
    goal = (
        f"goal: every account taken over within lease_timeout + {TAKEOVER_GOAL:g} s, one holder,"
        " nothing uncovered, the woken engine stands down having sent nothing"
    )
    db = asyncio.run(_pg_url())
    if db is None:
        result.verdict = f"{goal}: NOT met (PostgreSQL unavailable)"
        return result
    try:
        run = fleet_run(engines, accounts, positions, db, lambda line: None, freeze=True)
    finally:
        asyncio.run(_drop_pg(db))
    times = _takeover_lines(run, result, "frozen", "SIGSTOP")
    if run.stood_down_after_wake is not None:
        result.add(
            "woken",
            f"stood down {run.stood_down_after_wake:.2f} s after SIGCONT; order requests the exchanges took"
            f" from it: {len(run.sent_after_wake)}",
        )
    for problem in [*run.problems, *run.sent_after_wake][:10]:
        result.add("problem", problem)
    kept = (
        not run.problems
        and not run.double_held
        and not run.uncovered_samples
        and not run.sent_after_wake
        and run.stood_down_after_wake is not None
        and run.longest_uncovered <= PROTECTION_WINDOW
        and len(times) == len(run.victim_held) > 0
        and times[-1] <= FREEZE_LEASE_TIMEOUT + TAKEOVER_GOAL
    )
    result.verdict = f"{goal}: {'met' if kept else 'NOT met'}"
    return result


def _takeover_lines(run: FleetRun, result: Result, victim: str, how: str) -> list[float]:
    """The takeover times (sorted), one holder, the exchanges' cover: what both runs report."""
    times = sorted(run.takeover.values())
    if times:
        result.add(
            "takeover",
            f"{len(times)} accounts of the {victim} engine: p50 {percentile(times, 50):.2f} s, "
            f"p99 {percentile(times, 99):.2f} s, max {times[-1]:.2f} s ({how} → held and ready elsewhere)",
        )
    result.add("one holder", "always" if not run.double_held else f"TWICE: {run.double_held[:3]}")
    result.add(
        "exchanges",
        f"{len(run.uncovered_samples)} uncovered samples during the takeover; longest uncovered stretch "
        f"on any exchange over the run {run.longest_uncovered:.3f} s",
    )
    return times


def render(run: FleetRun, result: Result, goal: str) -> Result:
    result.add("capacity", f"{run.capacity} accounts per engine (the survivors have room for the dead one's)")
    result.add("opened", f"{run.accounts * run.positions} positions protected in {run.opened_in:.1f} s")
    times = _takeover_lines(run, result, "killed", "kill -9")
    lost = {name: n for name, n in run.tracked_after.items() if n != run.positions}
    result.add(
        "tracked after", "every position, by its account's new holder" if not lost else f"LOST: {lost}"
    )
    if run.rss_mb and run.accounts > 1:
        mean = sum(run.rss_mb) / len(run.rss_mb)
        per = (mean - run.base_rss_mb) / (run.accounts - 1)
        shown = ", ".join(f"{mb:.0f}" for mb in run.rss_mb)
        result.add(
            "memory",
            f"{per:.2f} MB per account (engines {shown} MB RSS serving all {run.accounts}, held or standby;"
            f" {run.base_rss_mb:.0f} MB serving one)",
        )
    for problem in run.problems[:10]:
        result.add("problem", problem)
    kept = (
        not run.problems
        and not run.double_held
        and not run.uncovered_samples
        and not lost
        and run.longest_uncovered <= PROTECTION_WINDOW
        and bool(times)
        and len(times) == len(run.victim_held)
        and percentile(times, 99) <= TAKEOVER_GOAL
    )
    at_scale = run.accounts >= GOAL_ACCOUNTS and run.positions >= GOAL_POSITIONS
    if kept and at_scale:
        verdict = "met"
    elif kept:
        verdict = f"NOT met at scale (kept, at {run.accounts} accounts x {run.positions} positions only)"
    else:
        verdict = "NOT met"
    result.verdict = f"{goal}: {verdict}"
    return result
