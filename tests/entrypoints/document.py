"""Checking an answer against the OpenAPI document the app serves (the schemas it promises)."""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema_rs


def documented_schema(doc: dict[str, Any], path: str, method: str, status: int) -> dict[str, Any]:
    """The JSON schema the document gives `method path`'s `status` answer, its refs resolvable."""
    answer = doc["paths"][path][method.lower()]["responses"][str(status)]
    schema: dict[str, Any] = answer["content"]["application/json"]["schema"]
    return {**schema, "components": doc["components"]}


def assert_conforms(doc: dict[str, Any], path: str, response: httpx.Response) -> None:
    """`response` has a status the route documents and a body its schema admits."""
    method = response.request.method
    schema = documented_schema(doc, path, method, response.status_code)
    errors = [str(e) for e in jsonschema_rs.Draft202012Validator(schema).iter_errors(response.json())]
    assert not errors, f"{method} {path} {response.status_code} does not conform: {errors[:3]}"
