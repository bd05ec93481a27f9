"""`warden chaos`: the promise (DESIGN.md I1-I8) checked under everything at once.

A composition root like `bench/`: it names adapters (the simulated exchange, the SQL store,
the lease) and builds engines the way `bootstrap` does, with their ports wrapped at
construction so faults can be switched on and off.

    steps.py      what a scenario is: steps (one action each) and the faults of a step
    generate.py   the seeded generator: (seed, run) -> the same Scenario every time
    warp.py       virtual time: an event loop that skips its idle waits
    ports.py      the wrapped ports (I/O counting, crash points, database faults, timed alerts)
    subject.py    the manager under test: warden (and the Subject protocol)
    naive.py      the naive twin: a manager built the way the seed incidents' bots were
    databases.py  a fresh SQLite file / PostgreSQL database per run, from a migrated template
    runner.py     one scenario in process: act, settle, one reconcile interval, check
    checker.py    the invariants, judged by the exchange's own records
    procs.py      the slice over real processes (warden sim serve, warden run, ccxt, kill -9)
    campaign.py   many runs; report.py renders them; command.py is `warden chaos`
    incidents.py  the four incidents of ../shared/seeds/, against warden and the naive twin
"""
