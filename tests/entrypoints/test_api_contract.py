"""The API contract: strict bodies, bounded numbers, body caps, tokens on every read, the document."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from warden.bootstrap import Runtime, running
from warden.entrypoints.api import create_app
from warden.entrypoints.schemas import PositionOut

from .conftest import AUTH, TOKEN, make_settings
from .document import assert_conforms
from .test_api import SIGNAL, assert_nothing_happened, open_sol

READ_TOKEN = "read-only-token-0123456789"


async def post_signal(client: httpx.AsyncClient, body: object) -> httpx.Response:
    return await client.post("/api/v1/signals", json=body, headers=AUTH)


@pytest.mark.parametrize("field", ["size_usd", "stop", "sl", "quantity"])
async def test_unknown_field_is_refused_naming_it(
    client: httpx.AsyncClient, runtime: Runtime, field: str
) -> None:
    """A misspelt field is a 422 naming it and listing the accepted fields; nothing opens."""
    response = await post_signal(client, {**SIGNAL, field: 5})
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["field"] == field
    assert error["error"] == "validation_error"
    assert {"symbol", "side", "usd", "qty", "stop_price", "signal_id"} <= set(error["accepted"])
    assert "usd" in error["message"]
    await assert_nothing_happened(runtime)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"symbol": "SOL", "side": "long", "usd": NaN}', "usd"),
        (b'{"symbol": "SOL", "side": "long", "usd": Infinity}', "usd"),
        (b'{"symbol": "SOL", "side": "long", "usd": -Infinity}', "usd"),
        (b'{"symbol": "SOL", "side": "long", "usd": "NaN"}', "usd"),
        (b'{"symbol": "SOL", "side": "long", "usd": "Infinity"}', "usd"),
        (b'{"symbol": "SOL", "side": "long", "usd": "1e309"}', "usd"),
        (b'{"symbol": "SOL", "side": "long", "usd": 1e400}', "usd"),
        (b'{"symbol": "SOL", "side": "long", "qty": "1e30"}', "qty"),
        (b'{"symbol": "SOL", "side": "long", "qty": 1e30}', "qty"),
        (b'{"symbol": "SOL", "side": "long", "qty": "' + b"1" * 41 + b'"}', "qty"),
        (b'{"symbol": "SOL", "side": "long", "qty": true}', "qty"),
        (b'{"symbol": "SOL", "side": "long", "qty": " 1"}', "qty"),
        (b'{"symbol": "SOL", "side": "long", "usd": "100", "stop_price": "1e-30"}', "stop_price"),
        (b'{"symbol": "SOL", "side": "long", "usd": "100", "stop_price": 0.001}', "stop_price"),
        (b'{"symbol": "' + b"S" * 65 + b'", "side": "long", "usd": "100"}', "symbol"),
        (b'{"symbol": "SOL", "side": "long", "usd": "100", "signal_id": "' + b"x" * 129 + b'"}', "signal_id"),
        (b'{"symbol": "SOL", "side": "long", "usd": "100", "secret": "' + b"x" * 257 + b'"}', "secret"),
        (b'{"symbol": "SOL", "side": "LONGISH", "usd": "100"}', "side"),
    ],
)
async def test_numbers_and_text_are_bounded(
    client: httpx.AsyncClient, runtime: Runtime, raw: bytes, field: str
) -> None:
    """NaN, Infinity, overflowing, over-long and sub-tick values: 422 naming the field; nothing is sent."""
    response = await client.post("/api/v1/signals", content=raw, headers=AUTH)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field, response.text
    await assert_nothing_happened(runtime)


async def test_numbers_as_json_numbers_or_strings(client: httpx.AsyncClient) -> None:
    """usd as a JSON number works like usd as a string."""
    response = await post_signal(client, {"symbol": "SOL", "side": "long", "usd": 100.5})
    assert response.status_code == 201, response.text
    again = await post_signal(client, {"symbol": "ETH", "side": "short", "qty": "0.05"})
    assert again.status_code == 201, again.text


async def test_deep_nesting_is_refused(client: httpx.AsyncClient, runtime: Runtime) -> None:
    """A body nested deeper than the limit is a 422 on `body` (never a RecursionError 500)."""
    deep = b"[" * 20_000 + b"]" * 20_000
    response = await client.post("/api/v1/signals", content=deep, headers=AUTH)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "body"
    inside = b'{"symbol": "SOL", "side": "long", "usd": ' + b"[" * 30 + b"]" * 30 + b"}"
    nested = await client.post("/api/v1/signals", content=inside, headers=AUTH)
    assert nested.status_code == 422
    await assert_nothing_happened(runtime)


async def test_100k_deep_and_1mb_bodies_are_413(client: httpx.AsyncClient, runtime: Runtime) -> None:
    """Bodies over max_body_bytes (64 KiB by default) are refused with 413 before being parsed."""
    for body in (b"[" * 100_000 + b"]" * 100_000, b'{"symbol": "' + b"x" * 1_000_000 + b'"}'):
        response = await client.post("/api/v1/signals", content=body, headers=AUTH)
        assert response.status_code == 413, response.text
        assert response.json()["error"] == "body_too_large"
    await assert_nothing_happened(runtime)


async def test_body_cap_is_a_setting(tmp_path: Path) -> None:
    """max_body_bytes moves the cap: 2 KiB refuses a 3 KiB signal that the default accepts."""
    async with running(make_settings(tmp_path, max_body_bytes=2048), price_feed=False) as rt:
        app = create_app(lambda: rt)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://w") as http:
            padded = {**SIGNAL, "signal_id": "x" * 100, "secret": TOKEN + " " * 0}
            small = await http.post("/api/v1/signals", json=padded, headers=AUTH)
            assert small.status_code == 201, small.text
            big = await http.post("/api/v1/signals", content=b" " * 3000 + b"{}", headers=AUTH)
            assert big.status_code == 413


async def test_validation_comes_before_the_duplicate_refusal(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """With SOL open, a wrong-side stop on SOL is a 422 on stop_price, not a 409; a valid second
    signal is a 409 that names the symbol (its cause), not signal_id."""
    first = await open_sol(client)
    wrong = await post_signal(client, {**SIGNAL, "stop_price": "1000", "signal_id": "new-id"})
    assert wrong.status_code == 422, wrong.text
    assert wrong.json()["field"] == "stop_price"
    stacked = await post_signal(client, {**SIGNAL, "signal_id": "new-id"})
    assert stacked.status_code == 409, stacked.text
    assert stacked.json()["field"] == "symbol"
    assert stacked.json()["position_id"] == first["id"]
    assert PositionOut.model_validate(stacked.json()["position"]).id == first["id"]  # complete, with nulls
    assert len(await runtime.store.list_positions(include_closed=True)) == 1


async def test_duplicate_signal_id_names_signal_id(client: httpx.AsyncClient) -> None:
    """A resent signal id on a closed position is a 409 naming signal_id."""
    first = await open_sol(client, signal_id="once")
    await client.post(f"/api/v1/positions/{first['id']}/close", headers=AUTH)
    again = await post_signal(client, {**SIGNAL, "signal_id": "once"})
    assert again.status_code == 409
    assert again.json()["field"] == "signal_id"


async def test_close_and_reconcile_bodies_are_strict(client: httpx.AsyncClient) -> None:
    """The body of close and reconcile may be empty, {} or carry only the token — anything else
    is refused, naming what is accepted."""
    p = await open_sol(client)
    refused = await client.post(f"/api/v1/positions/{p['id']}/close", json={"reason": "x"}, headers=AUTH)
    assert refused.status_code == 422
    assert refused.json()["field"] == "reason"
    assert refused.json()["accepted"] == ["secret"]
    assert refused.json()["message"] == "is not a field warden knows; accepted: secret"
    assert (await client.post("/api/v1/reconcile", json={}, headers=AUTH)).status_code == 200
    assert (await client.post("/api/v1/reconcile", json=[1], headers=AUTH)).status_code == 422
    closed = await client.post(f"/api/v1/positions/{p['id']}/close", json={}, headers=AUTH)
    assert closed.status_code == 200


@pytest.mark.parametrize(
    ("path", "accepted"),
    [
        ("/api/v1/pause", ["reason", "secret"]),
        ("/api/v1/resume", ["secret"]),
        ("/api/v1/kill", ["flatten", "reason", "secret"]),
        ("/api/v1/reconcile", ["secret"]),
    ],
)
async def test_control_bodies_list_exactly_what_they_accept(
    client: httpx.AsyncClient, path: str, accepted: list[str]
) -> None:
    """An unknown field on pause, resume, kill or reconcile is a 422 whose `accepted` (and message) is exactly
    what the body takes, `secret` included; the OpenAPI document says the same, and `secret`
    alone authorizes the call."""
    refused = await client.post(path, json={"flaten": True}, headers=AUTH)
    assert refused.status_code == 422, refused.text
    error = refused.json()
    assert error["field"] == "flaten"
    assert sorted(error["accepted"]) == accepted
    listed = error["message"].removeprefix("is not a field warden knows; accepted: ")
    assert sorted(listed.split(", ")) == accepted, error["message"]
    doc = (await client.get("/api/v1/openapi.json")).json()
    ref = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = doc["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    assert sorted(schema["properties"]) == accepted
    assert schema["additionalProperties"] is False
    assert (await client.post(path, json={"secret": "guess"})).status_code == 401
    by_secret = await client.post(path, json={"secret": TOKEN})
    assert by_secret.status_code == 200, by_secret.text
    assert_conforms(doc, path, by_secret)


READS = ["/api/v1/positions", "/api/v1/status", "/api/v1/events", "/api/v1/positions/x/events"]


@pytest.fixture
async def read_client(tmp_path: Path) -> Any:
    async with running(make_settings(tmp_path, api_read_token=READ_TOKEN), price_feed=False) as rt:
        app = create_app(lambda: rt)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://w") as http:
            yield http


@pytest.mark.parametrize("path", READS)
async def test_every_read_needs_a_token(read_client: httpx.AsyncClient, path: str) -> None:
    """Reads without a token are 401; the read token and the API token both read."""
    assert (await read_client.get(path)).status_code == 401
    assert (await read_client.get(path, headers={"Authorization": "Bearer nope"})).status_code == 401
    with_read = await read_client.get(path, headers={"Authorization": f"Bearer {READ_TOKEN}"})
    assert with_read.status_code in (200, 404), with_read.text
    assert (await read_client.get(path, headers=AUTH)).status_code == with_read.status_code


async def test_read_token_cannot_mutate(read_client: httpx.AsyncClient) -> None:
    """The read token gets 403 on every mutating call, including a signal with it as `secret`."""
    headers = {"Authorization": f"Bearer {READ_TOKEN}"}
    for path in (
        "/api/v1/signals",
        "/api/v1/reconcile",
        "/api/v1/positions/x/close",
        "/api/v1/positions/close",
    ):
        response = await read_client.post(path, json={}, headers=headers)
        assert response.status_code == 403, path
        assert response.json()["error"] == "forbidden"
    as_secret = await read_client.post("/api/v1/signals", json={**SIGNAL, "secret": READ_TOKEN})
    assert as_secret.status_code == 403


async def test_open_routes_show_no_amounts(client: httpx.AsyncClient) -> None:
    """/healthz, /metrics and the OpenAPI document answer without a token and show no amounts."""
    p = await open_sol(client)
    health = await client.get("/healthz")
    assert health.status_code == 200
    assert set(health.json()) == {"status", "state", "reasons"}
    metrics = (await client.get("/metrics")).text
    values = {line.rsplit(" ", 1)[-1] for line in metrics.splitlines() if line and not line.startswith("#")}
    amounts = {p["entry_price"], p["size"], p["stop_price"], p["tp1_price"]}
    # a sample's value is its last token: none is an amount (a timestamp may contain "150")
    assert not {
        v for v in values if v.rstrip("0").rstrip(".") in {a.rstrip("0").rstrip(".") for a in amounts}
    }
    assert (await client.get("/api/v1/openapi.json")).status_code == 200
    assert (await client.get("/api/v1/docs")).status_code == 200


async def test_openapi_documents_bodies_responses_and_codes(client: httpx.AsyncClient) -> None:
    """Every route has real request and response schemas, the error shape and its status codes."""
    doc = (await client.get("/api/v1/openapi.json")).json()
    schemas = doc["components"]["schemas"]
    signal = schemas["SignalIn"]
    assert signal["additionalProperties"] is False
    assert {"symbol", "side", "usd", "qty", "stop_price", "signal_id", "timestamp", "secret"} <= set(
        signal["properties"]
    )
    assert "error" in schemas["ErrorOut"]["properties"]
    paths = doc["paths"]
    post = paths["/api/v1/signals"]["post"]
    body = post["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/SignalIn"}
    assert {"201", "202", "401", "403", "409", "413", "422", "503"} <= set(post["responses"])
    for path, methods in paths.items():
        for method, op in methods.items():
            for code, answer in op["responses"].items():
                for media in answer.get("content", {}).values():
                    assert media["schema"] not in ({}, None), f"{method} {path} {code} has an empty schema"
            if path.startswith("/api/v1"):
                assert "401" in op["responses"], f"{method} {path} does not document 401"
                assert op.get("security"), f"{method} {path} does not declare the token"
            if method in ("post", "patch"):
                assert "requestBody" in op, f"{method} {path} documents no body"
                assert "413" in op["responses"]


async def test_unknown_query_parameters_are_refused(client: httpx.AsyncClient) -> None:
    """A query parameter the route does not know is a 422 naming it, like an unknown body field."""
    response = await client.get("/api/v1/positions?all=false&everything=1", headers=AUTH)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "everything"


async def test_kill_and_limit_answers_are_what_the_document_says(client: httpx.AsyncClient) -> None:
    """The kill switch's closed positions are positions (as GET /positions/{id} shows them), and a
    limit refusal's fields (`limit`, `value`, `maximum`) are in the documented error shape."""
    doc = (await client.get("/api/v1/openapi.json")).json()
    schemas = doc["components"]["schemas"]
    assert schemas["KillReply"]["properties"]["closed"]["items"] == {
        "$ref": "#/components/schemas/PositionOut"
    }
    assert {"limit", "value", "maximum"} <= set(schemas["ErrorOut"]["properties"])

    refused = await client.post("/api/v1/signals", json={**SIGNAL, "usd": "20000"}, headers=AUTH)
    assert refused.status_code == 422 and refused.json()["error"] == "limit_exceeded", refused.text
    assert_conforms(doc, "/api/v1/signals", refused)

    p = await open_sol(client)
    killed = await client.post("/api/v1/kill", json={"flatten": True}, headers=AUTH)
    assert killed.status_code == 200, killed.text
    assert_conforms(doc, "/api/v1/kill", killed)
    [closed] = killed.json()["closed"]
    shown = (await client.get(f"/api/v1/positions/{p['id']}", headers=AUTH)).json()
    assert closed == shown


async def test_a_script_without_headers_closes_and_patches_by_the_body_secret(
    client: httpx.AsyncClient,
) -> None:
    """The token in the body authorizes a close or a change of a position (as for a signal): it
    is one of the fields those bodies accept, listed in a 422 and in the document."""
    p = await open_sol(client)
    doc = (await client.get("/api/v1/openapi.json")).json()
    for path, method in (
        ("/api/v1/positions/{position_id}/close", "post"),
        ("/api/v1/positions/{position_id}", "patch"),
    ):
        ref = doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert "secret" in doc["components"]["schemas"][ref.rsplit("/", 1)[-1]]["properties"], path
    refused = await client.patch(f"/api/v1/positions/{p['id']}", json={"stop": "140"}, headers=AUTH)
    assert refused.status_code == 422
    assert refused.json()["accepted"] == ["secret", "stop_price", "tp1_price", "tp2_price"]
    assert (
        await client.patch(
            f"/api/v1/positions/{p['id']}", json={"stop_price": p["stop_price"], "secret": "guess"}
        )
    ).status_code == 401
    tightened = await client.patch(
        f"/api/v1/positions/{p['id']}",
        json={"stop_price": str(Decimal(p["stop_price"]) + 1), "secret": TOKEN},
    )
    assert tightened.status_code == 200, tightened.text
    closed = await client.post(f"/api/v1/positions/{p['id']}/close", json={"secret": TOKEN})
    assert closed.status_code == 200, closed.text
    assert closed.json()["status"] == "closed"
