"""The polling rules against scripted answers (httpx.MockTransport, no network): interval,
slow_down +5 s, Retry-After, the error mapping, and what is sent."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from countersign import (
    AsyncClient,
    Client,
    ServerError,
    TimedOut,
    TransactionFailed,
)

URL = "http://approvals.test"
META = {
    "issuer": URL,
    "backchannel_authentication_endpoint": f"{URL}/bc-authorize",
    "token_endpoint": f"{URL}/token",
    "jwks_uri": f"{URL}/jwks.json",
    "grant_types_supported": ["urn:openid:params:grant-type:ciba"],
}


def scripted(token_answers: list[httpx.Response], seen: list[httpx.Request]) -> Callable[[httpx.Request], httpx.Response]:
    def handle(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        if req.url.path == "/.well-known/openid-configuration":
            return httpx.Response(200, json=META)
        if req.url.path == "/bc-authorize":
            return httpx.Response(200, json={"auth_req_id": "rid-1", "expires_in": 300, "interval": 2})
        if req.url.path == "/token":
            return token_answers.pop(0)
        return httpx.Response(404)

    return handle


def err(code: str, status: int = 400, **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"error": code, "error_description": f"{code} here"}, headers=headers)


def tokens() -> httpx.Response:
    body = {"access_token": "a.b.c", "token_type": "Bearer", "expires_in": 600, "authorization_details": []}
    return httpx.Response(200, json=body)


def run_sync(answers: list[httpx.Response]) -> tuple[Any, list[float], list[httpx.Request]]:
    waits: list[float] = []
    seen: list[httpx.Request] = []
    c = Client(URL, "agent:1", "s3cret%+", transport=httpx.MockTransport(scripted(answers, seen)), sleep=waits.append)
    req = c.request_approval("apv_x", "Pay", [{"type": "t"}], requested_expiry=60)
    try:
        return c.wait_for_decision(req), waits, seen
    finally:
        c.close()


def test_interval_slow_down_and_retry_after() -> None:
    approval, waits, seen = run_sync(
        [
            err("authorization_pending"),
            err("slow_down"),
            err("authorization_pending"),
            err("temporarily_unavailable", 503, **{"Retry-After": "11"}),
            err("too_many_requests", 429, **{"Retry-After": "3"}),
            tokens(),
        ]
    )
    assert approval.access_token == "a.b.c"
    # interval 2; slow_down makes it 7 for good; Retry-After 11 wins once; 3 < 7 so 7.
    assert waits == [2, 7, 7, 11, 7]


def test_what_is_sent() -> None:
    _, _, seen = run_sync([tokens()])
    bc = seen[1]
    assert bc.url.path == "/bc-authorize"
    form = {k: v[0] for k, v in parse_qs(bc.content.decode()).items()}
    assert form == {
        "scope": "openid",
        "login_hint": "apv_x",
        "binding_message": "Pay",
        "authorization_details": '[{"type":"t"}]',
        "requested_expiry": "60",
    }
    # RFC 6749 2.3.1: id and secret form-urlencoded inside Basic, so ':' '%' '+' survive.
    basic = base64.b64decode(bc.headers["authorization"].split(" ")[1]).decode()
    assert basic == "agent%3A1:s3cret%25%2B"
    tok = {k: v[0] for k, v in parse_qs(seen[2].content.decode()).items()}
    assert tok == {"grant_type": "urn:openid:params:grant-type:ciba", "auth_req_id": "rid-1"}


@pytest.mark.parametrize(
    ("answer", "exc", "code"),
    [
        (err("transaction_failed"), TransactionFailed, "transaction_failed"),
        (err("storage_failed", 500), ServerError, "storage_failed"),
        (httpx.Response(502, text="<html>bad gateway</html>"), ServerError, "server_error"),
        (err("not_witnessed", 503), ServerError, "not_witnessed"),  # no Retry-After: give up
        (httpx.Response(200, text="not json"), ServerError, "server_error"),
        (httpx.Response(200, json={"token_type": "Bearer"}), ServerError, "server_error"),
    ],
)
def test_errors_fail_closed(answer: httpx.Response, exc: type[Exception], code: str) -> None:
    with pytest.raises(exc) as e:
        run_sync([err("authorization_pending"), answer])
    assert e.value.error == code  # type: ignore[attr-defined]


def test_timeout_counts_the_next_wait() -> None:
    waits: list[float] = []
    seen: list[httpx.Request] = []
    answers = [err("authorization_pending")] * 10
    with Client(URL, "a", "s", transport=httpx.MockTransport(scripted(answers, seen)), sleep=waits.append) as c:
        with pytest.raises(TimedOut):
            c.wait_for_decision("rid-1", timeout=1)  # default interval 5 > 1
    assert waits == []


async def test_async_follows_the_same_rules() -> None:
    waits: list[float] = []
    seen: list[httpx.Request] = []

    async def sleep(s: float) -> None:
        waits.append(s)

    answers = [err("slow_down"), err("authorization_pending", **{"Retry-After": "9"}), tokens()]
    async with AsyncClient(URL, "a", "s", transport=httpx.MockTransport(scripted(answers, seen)), sleep=sleep) as c:
        req = await c.request_approval("apv_x", "Pay", [{"type": "t"}])
        approval = await c.wait_for_decision(req)
    assert approval.access_token == "a.b.c"
    assert waits == [7, 9]


def test_secret_is_not_in_repr() -> None:
    c = Client(URL, "agent", "top-secret-value")
    assert "top-secret-value" not in repr(c)
    c.close()
    assert json.dumps(repr(c))
