"""The CIBA client against a live server: approve, deny, expiry, slow_down, unreachable,
refusals; sync and async."""

from __future__ import annotations

import logging
import time

import pytest
from conftest import APPROVER_ID, CLIENT_ID, CLIENT_SECRET, payment

import countersign
from countersign import (
    AccessDenied,
    AsyncClient,
    Client,
    Expired,
    InvalidGrant,
    RequestRejected,
    TimedOut,
    Unreachable,
)


def test_discovery(client: Client, server) -> None:
    m = client.discover()
    assert m["issuer"] == server.url
    assert m["backchannel_authentication_endpoint"] == f"{server.url}/bc-authorize"
    assert "client_secret_basic" in m["token_endpoint_auth_methods_supported"]


def test_approve_returns_tokens_that_pass_the_execution_check(client: Client, decide, message) -> None:
    msg = message("Pay 42.00 EUR to ACME")
    details = payment("42.00")
    req = client.request_approval(APPROVER_ID, msg, details, requested_expiry=120)
    assert req.interval == 1 and req.expires_in == 120
    assert req.auth_req_id not in repr(req), "the auth_req_id is a secret"
    decided = decide(msg, "approve")
    approval = client.wait_for_decision(req, timeout=30)
    assert decided.result()["decision"] == "approve"
    assert approval.token_type.lower() == "bearer"
    assert approval.authorization_details == details
    claims = client.check_execution(approval.access_token, details)
    assert claims["sub"] == APPROVER_ID and claims["aud"] == CLIENT_ID
    assert isinstance(claims["log_index"], int) and len(claims["statement_hash"]) == 64
    # The same action with members in another order is the same action (RFC 8785).
    reordered = [{"creditorName": "ACME Ltd", "instructedAmount": {"amount": "42.00", "currency": "EUR"}, "type": "payment_initiation"}]
    client.check_execution(approval.access_token, reordered)
    # Tokens are issued once: polling again is invalid_grant.
    with pytest.raises(InvalidGrant) as e:
        client.poll(req)
    assert e.value.error == "invalid_grant"


def test_deny_raises_access_denied(client: Client, decide, message) -> None:
    msg = message("Delete the production database")
    req = client.request_approval(APPROVER_ID, msg, [{"type": "shell_command", "command": "dropdb prod"}])
    decide(msg, "deny")
    with pytest.raises(AccessDenied) as e:
        client.wait_for_decision(req, timeout=30)
    assert e.value.error == "access_denied" and e.value.status == 400
    assert "denied" in e.value.description


def test_expiry_raises_expired(client: Client, message) -> None:
    req = client.request_approval(APPROVER_ID, message("Expires at once"), payment("1.00"), requested_expiry=1)
    assert req.expires_in == 1
    started = time.monotonic()
    with pytest.raises(Expired) as e:
        client.wait_for_decision(req, timeout=30)
    assert e.value.error == "expired_token"
    assert time.monotonic() - started < 10


def test_requested_expiry_below_the_minimum_is_refused(server, message) -> None:
    with Client(server.url, CLIENT_ID, CLIENT_SECRET) as c:
        with pytest.raises(RequestRejected) as e:
            c.request_approval(APPROVER_ID, message("too short"), payment("1.00"), requested_expiry=0)
    assert e.value.error == "invalid_request"


def test_unknown_approver_and_bad_secret_are_refused(server, client: Client, message) -> None:
    with pytest.raises(RequestRejected) as e:
        client.request_approval("apv_nobody", message("x"), payment("1.00"))
    assert e.value.error == "unknown_user_id"
    with Client(server.url, CLIENT_ID, "wrong-secret") as bad:
        with pytest.raises(RequestRejected) as e:
            bad.request_approval(APPROVER_ID, message("x"), payment("1.00"))
    assert e.value.error == "invalid_client" and e.value.status == 401


def test_slow_down_adds_five_seconds(client: Client, decide, message, caplog) -> None:
    msg = message("Deploy build 7 to production")
    req = client.request_approval(APPROVER_ID, msg, [{"type": "deploy", "build": 7}], requested_expiry=120)
    # Another poller (or a retry) polled just now: the next poll comes too early.
    assert client.poll(req) is None
    caplog.set_level(logging.DEBUG, logger="countersign")
    decide(msg, "approve")
    started = time.monotonic()
    approval = client.wait_for_decision(req, timeout=30)
    waited = time.monotonic() - started
    assert any("slow_down" in r.getMessage() and "6" in r.getMessage() for r in caplog.records)
    # After slow_down the interval is 1 + 5 s; polling at the old 1 s would be slow_down again
    # and again, and the approval would be lost after its collection window.
    assert waited >= 6, waited
    client.check_execution(approval.access_token, [{"type": "deploy", "build": 7}])


def test_timeout_gives_up_without_a_decision(client: Client, message) -> None:
    req = client.request_approval(APPROVER_ID, message("Nobody answers"), payment("3.00"))
    with pytest.raises(TimedOut):
        client.wait_for_decision(req, timeout=1.5)


def test_unreachable_server_fails_closed() -> None:
    from server import free_port

    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with Client(url, CLIENT_ID, CLIENT_SECRET, timeout=2) as c:
        with pytest.raises(Unreachable) as e:
            c.request_approval(APPROVER_ID, "Pay", payment("1.00"))
        assert e.value.error == "unreachable"
        with pytest.raises(Unreachable):
            c.wait_for_decision("some-auth-req-id", timeout=5)


def test_server_lost_while_waiting_fails_closed(server, message) -> None:
    """A second server, stopped while the client polls it: Unreachable, no token."""
    from server import Server

    other = Server([])
    other.start()
    try:
        other.add_client(CLIENT_ID, CLIENT_SECRET)
        link = other.add_approver("apv_other", "o@example.com", "Other")
        from approver import Approver

        a = Approver(other.url, other.port)
        a.enrol(link)
        with Client(other.url, CLIENT_ID, CLIENT_SECRET, timeout=2) as c:
            req = c.request_approval("apv_other", message("Pay"), payment("5.00"))
            assert c.poll(req) is None
            other.stop(keep_dir=True)
            with pytest.raises(Unreachable):
                c.wait_for_decision(req, timeout=10)
        a.close()
    finally:
        other.stop()


async def test_async_approve(aclient: AsyncClient, decide, message) -> None:
    msg = message("Async: pay 7.50 EUR")
    details = payment("7.50")
    req = await aclient.request_approval(APPROVER_ID, msg, details)
    decide(msg, "approve")
    approval = await aclient.wait_for_decision(req, timeout=30)
    claims = await aclient.check_execution(approval.access_token, details)
    assert claims["authorization_details"] == details
    with pytest.raises(countersign.ExecutionMismatch):
        await aclient.check_execution(approval.access_token, payment("7.51"))


async def test_async_deny_and_expiry(aclient: AsyncClient, decide, message) -> None:
    msg = message("Async: deny me")
    req = await aclient.request_approval(APPROVER_ID, msg, payment("8.00"))
    decide(msg, "deny")
    with pytest.raises(AccessDenied):
        await aclient.wait_for_decision(req, timeout=30)
    req = await aclient.request_approval(APPROVER_ID, message("Async: expire"), payment("9.00"), requested_expiry=1)
    with pytest.raises(Expired):
        await aclient.wait_for_decision(req, timeout=30)


async def test_async_unreachable() -> None:
    from server import free_port

    async with AsyncClient(f"http://127.0.0.1:{free_port()}", CLIENT_ID, CLIENT_SECRET, timeout=2) as c:
        with pytest.raises(Unreachable):
            await c.request_approval(APPROVER_ID, "Pay", payment("1.00"))
