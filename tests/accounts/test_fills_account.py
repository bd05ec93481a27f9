"""Fills are an account's own: the same trade id on two accounts of one exchange is two fills."""

from __future__ import annotations

from sqlalchemy import select

from tests.store.builders import fill, insert, position
from warden.adapters.db import rows
from warden.adapters.db.engine import create_engine
from warden.adapters.db.migrate import current_revision, script_head, upgrade
from warden.adapters.db.schema import fills, positions
from warden.adapters.db.store import open_store


async def test_two_accounts_each_keep_their_fill_with_the_same_trade_id(store_url: str) -> None:
    a = await open_store(store_url, exchange="sim", account="a")
    b = await open_store(store_url, exchange="sim", account="b")
    try:
        await a.commit(insert(position("pa"), fills=[fill("pa", "T1")]))
        await b.commit(insert(position("pb"), fills=[fill("pb", "T1")]))
        assert [f.trade_id for f in await a.fills_for(position("pa").id)] == ["T1"]
        assert [f.trade_id for f in await b.fills_for(position("pb").id)] == ["T1"]
    finally:
        await a.close()
        await b.close()


async def test_fills_from_before_0005_take_their_positions_account(store_url: str) -> None:
    await upgrade(store_url, revision="0004")
    engine = create_engine(store_url, op_timeout=5, pooled=False)
    try:
        async with engine.begin() as conn:
            await conn.execute(positions.insert().values(**rows.position_row(position("old"), "legacy")))
            row = rows.fill_row(fill("old", "T9"), "sim", "legacy")
            del row["account"]  # the column does not exist yet
            await conn.execute(fills.insert().values(**row))
    finally:
        await engine.dispose()
    store = await open_store(store_url, exchange="sim", account="legacy")
    try:
        assert await current_revision(store_url) == script_head()  # migrated to the newest
        assert [f.trade_id for f in await store.fills_for(position("old").id)] == ["T9"]
        async with store.engine.connect() as conn:
            accounts = (await conn.execute(select(fills.c.account))).scalars().all()
        assert accounts == ["legacy"]
    finally:
        await store.close()
