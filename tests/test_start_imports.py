"""What the start path loads: `warden run`'s command line, the engine and the API on SQLite,
without Telegram or webhooks, import none of the optional heavy packages (the client commands
load httpx when they call out), and opening a store already at the newest schema loads no Alembic.
(Start-up time itself is measured by `warden bench recovery`, not asserted here.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from alembic.script import ScriptDirectory

from warden.adapters.db.migrate import alembic_config, script_head

OPTIONAL = ("alembic", "telegram", "asyncpg", "jinja2", "httpx", "ccxt")


def test_the_head_read_from_the_files_is_alembics() -> None:
    assert script_head() == ScriptDirectory.from_config(alembic_config()).get_current_head()


def test_the_start_path_imports_no_optional_package(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    code = f"""
import asyncio, sys
from warden.adapters.db.migrate import upgrade
asyncio.run(upgrade({url!r}))  # a new database: Alembic creates the schema
for name in list(sys.modules):
    if name.split(".")[0] in ("alembic", "mako"):
        del sys.modules[name]
import warden.entrypoints.cli, warden.bootstrap, warden.entrypoints.api
from warden.adapters.db.store import open_store

async def main():
    store = await open_store({url!r}, exchange="sim")  # at head now: no Alembic
    await store.load_active()
    await store.close()

asyncio.run(main())
print(",".join(sorted({{n.split(".")[0] for n in sys.modules}} & set({OPTIONAL!r}))))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""
