"""A bare /kill with several accounts, on fakes of each account's engine: every account's kill
goes on at once (one account's slow flatten holds no other back), and the reply says ALL only
when every account's kill switch is on."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from typing import cast

from tests.helpers import eventually
from warden.domain.controls import Controls
from warden.entrypoints.telegram import BotEngine, Commands, FleetCommands
from warden.service.commands import KillReport, NotHolder

CHAT = 1


class KillOnly:
    """The part of an engine a kill reaches: it may hang (a flatten on an exchange that does not
    answer) or refuse (a standby)."""

    def __init__(self, *, hang: bool = False, standby: bool = False) -> None:
        self.hang, self.standby = hang, standby
        self.killed = False
        self.release = asyncio.Event()

    async def kill(self, flatten: bool = False, reason: str = "") -> KillReport:
        if self.standby:
            raise NotHolder("engine is read_only: standby: account 'alt' is held by host-b:1")
        self.killed = True
        if self.hang:
            await self.release.wait()
        return KillReport(Controls(paused=True, killed=True, reason=reason))


def fleet_of(**engines: KillOnly) -> FleetCommands:
    return FleetCommands(
        {
            name: Commands(cast(BotEngine, engine), Decimal(100), lambda: datetime.now(UTC))
            for name, engine in engines.items()
        }
    )


async def test_a_bare_kill_does_not_wait_for_one_accounts_slow_flatten() -> None:
    main, alt = KillOnly(hang=True), KillOnly()
    replying = asyncio.ensure_future(fleet_of(main=main, alt=alt).respond(CHAT, "/kill flatten"))
    try:
        await eventually(lambda: alt.killed, what="alt's kill switch on while main's flatten hangs")
    finally:
        main.release.set()
        reply = await replying
    assert main.killed and "[main]" in reply.text and "[alt]" in reply.text


async def test_a_bare_kill_that_could_not_stop_an_account_does_not_say_all() -> None:
    main, alt = KillOnly(), KillOnly(standby=True)
    reply = await fleet_of(main=main, alt=alt).respond(CHAT, "/kill")
    assert main.killed
    assert "ALL" not in reply.text
    assert "NOT on for alt" in reply.text
