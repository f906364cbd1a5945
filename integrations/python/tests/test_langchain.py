"""The LangChain decorator on a real @tool against the live server: the body runs once after an
approval and the execution check, never on a denial, an expiry, an unreachable server, a token
for other arguments or a tampered token."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from conftest import APPROVER_ID, CLIENT_ID, CLIENT_SECRET
from langchain_core.messages import ToolMessage
from langchain_core.tools import tool

import countersign
from countersign import AccessDenied, AsyncClient, Client, ExecutionMismatch, Expired, InvalidToken, Unreachable
from countersign.langchain import PREAPPROVED_TOKEN_KEY, Action, requires_approval


def describe(tag: str):
    def d(args: dict[str, Any]) -> Action:
        return Action(
            f"Pay {args['amount']} EUR to {args['creditor']} {tag}",
            [{"type": "payment_initiation", "amount": args["amount"], "creditor": args["creditor"]}],
        )

    return d


def make_pay(client: Client | AsyncClient, tag: str, ran: list[dict[str, Any]], **kw: Any):
    @requires_approval(client, approver=APPROVER_ID, describe=describe(tag), **kw)
    @tool
    def pay(amount: str, creditor: str) -> str:
        """Pay an amount in EUR to a creditor."""
        ran.append({"amount": amount, "creditor": creditor})
        return f"paid {amount} EUR to {creditor}"

    return pay


def test_wrapper_keeps_the_tool_interface(client: Client) -> None:
    pay = make_pay(client, "#iface", [])
    assert pay.name == "pay"
    assert "Pay an amount" in pay.description
    assert set(pay.args) == {"amount", "creditor"}


def test_approve_runs_the_body_once(client: Client, decide, message) -> None:
    tag = message("#lc-approve").split(" ")[-1]
    ran: list[dict[str, Any]] = []
    pay = make_pay(client, tag, ran)
    decided = decide(f"Pay 12.00 EUR to ACME {tag}", "approve")
    # A model's tool call, as an agent loop hands it over.
    out = pay.invoke({"type": "tool_call", "id": "call_1", "name": "pay", "args": {"amount": "12.00", "creditor": "ACME"}})
    assert isinstance(out, ToolMessage) and out.content == "paid 12.00 EUR to ACME"
    assert decided.result()["decision"] == "approve"
    assert ran == [{"amount": "12.00", "creditor": "ACME"}]


def test_deny_never_runs_the_body(client: Client, decide, message) -> None:
    tag = message("#lc-deny").split(" ")[-1]
    ran: list[dict[str, Any]] = []
    pay = make_pay(client, tag, ran)
    decide(f"Pay 13.00 EUR to ACME {tag}", "deny")
    with pytest.raises(AccessDenied):
        pay.invoke({"amount": "13.00", "creditor": "ACME"})
    assert ran == []


def test_deny_reported_to_the_model(client: Client, decide, message) -> None:
    tag = message("#lc-report").split(" ")[-1]
    ran: list[dict[str, Any]] = []
    pay = make_pay(client, tag, ran, report_to_model=True)
    decide(f"Pay 14.00 EUR to ACME {tag}", "deny")
    out = pay.invoke({"amount": "14.00", "creditor": "ACME"})
    assert "not run" in out and "access_denied" in out
    assert ran == []


def test_expiry_never_runs_the_body(client: Client, message) -> None:
    ran: list[dict[str, Any]] = []
    pay = make_pay(client, message("#lc-expire").split(" ")[-1], ran, requested_expiry=1)
    with pytest.raises(Expired):
        pay.invoke({"amount": "15.00", "creditor": "ACME"})
    assert ran == []


def test_unreachable_server_never_runs_the_body() -> None:
    from server import free_port

    ran: list[dict[str, Any]] = []
    with Client(f"http://127.0.0.1:{free_port()}", CLIENT_ID, CLIENT_SECRET, timeout=2) as c:
        pay = make_pay(c, "#down", ran)
        with pytest.raises(Unreachable):
            pay.invoke({"amount": "16.00", "creditor": "ACME"})
    assert ran == []


def _approved_token(client: Client, decide, tag: str, amount: str, creditor: str) -> str:
    action = describe(tag)({"amount": amount, "creditor": creditor})
    decide(action.binding_message, "approve")
    req = client.request_approval(APPROVER_ID, action.binding_message, action.authorization_details)
    return client.wait_for_decision(req, timeout=30).access_token


def test_preapproved_token_runs_only_its_own_arguments_and_only_once(client: Client, decide, message) -> None:
    tag = message("#lc-pre").split(" ")[-1]
    token = _approved_token(client, decide, tag, "17.00", "ACME")
    ran: list[dict[str, Any]] = []
    pay = make_pay(client, tag, ran)
    cfg = {"configurable": {PREAPPROVED_TOKEN_KEY: token}}

    # Different arguments than approved: refused by the execution check, body not run.
    with pytest.raises(ExecutionMismatch):
        pay.invoke({"amount": "1700.00", "creditor": "ACME"}, config=cfg)
    with pytest.raises(ExecutionMismatch):
        pay.invoke({"amount": "17.00", "creditor": "Mallory"}, config=cfg)
    assert ran == []

    # A tampered token (its action rewritten to the call's arguments): refused.
    h, p, s = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))
    claims["authorization_details"][0]["amount"] = "1700.00"
    p2 = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(InvalidToken):
        pay.invoke({"amount": "1700.00", "creditor": "ACME"}, config={"configurable": {PREAPPROVED_TOKEN_KEY: f"{h}.{p2}.{s}"}})
    assert ran == []

    # The approved arguments: runs once; the same approval a second time does not.
    assert pay.invoke({"amount": "17.00", "creditor": "ACME"}, config=cfg) == "paid 17.00 EUR to ACME"
    with pytest.raises(InvalidToken, match="already used"):
        pay.invoke({"amount": "17.00", "creditor": "ACME"}, config=cfg)
    assert ran == [{"amount": "17.00", "creditor": "ACME"}]


async def test_async_tool(aclient: AsyncClient, decide, message) -> None:
    tag = message("#lc-async").split(" ")[-1]
    ran: list[dict[str, Any]] = []
    pay = make_pay(aclient, tag, ran)
    decide(f"Pay 18.00 EUR to ACME {tag}", "approve")
    assert await pay.ainvoke({"amount": "18.00", "creditor": "ACME"}) == "paid 18.00 EUR to ACME"
    decide(f"Pay 19.00 EUR to ACME {tag}", "deny")
    with pytest.raises(AccessDenied):
        await pay.ainvoke({"amount": "19.00", "creditor": "ACME"})
    assert ran == [{"amount": "18.00", "creditor": "ACME"}]


def test_default_describe_approves_the_call_as_json(client: Client, decide, message, approver) -> None:
    ran: list[int] = []

    @requires_approval(client, approver=APPROVER_ID)
    @tool
    def restart(service: str, replicas: int) -> str:
        """Restart a service."""
        ran.append(replicas)
        return "ok"

    import threading

    seen: dict[str, Any] = {}

    def approve_it() -> None:
        q = approver.wait_for_request("Run the tool restart")
        seen.update(q)
        approver.decide(q["request_id"], "approve")

    t = threading.Thread(target=approve_it)
    t.start()
    assert restart.invoke({"service": "web", "replicas": 3}) == "ok"
    t.join()
    assert seen["authorization_details"] == [{"type": "tool_call", "tool": "restart", "arguments": {"service": "web", "replicas": 3}}]
    assert ran == [3]


def test_wrapping_needs_a_client_and_a_tool(client: Client) -> None:
    with pytest.raises(TypeError):
        requires_approval(object(), approver="x")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        requires_approval(client, approver="x")(lambda: None)  # type: ignore[arg-type]
    assert countersign.Client is Client


def test_action_is_checked_again_just_before_the_body_runs(client: Client, decide, message) -> None:
    """The check runs on what is about to run, not on what was asked: a describe that yields
    another action the second time (here a counter; in real code anything that drifted) is
    refused after the approval, and the body does not run."""
    tag = message("#lc-drift").split(" ")[-1]
    calls: list[int] = []

    def drifting(args: dict[str, Any]) -> Action:
        calls.append(1)
        amount = "20.00" if len(calls) == 1 else "20.01"
        return Action(f"Pay {amount} EUR {tag}", [{"type": "payment_initiation", "amount": amount}])

    ran: list[str] = []

    @requires_approval(client, approver=APPROVER_ID, describe=drifting)
    @tool
    def pay(amount: str) -> str:
        """Pay."""
        ran.append(amount)
        return "paid"

    approved = decide(f"Pay 20.00 EUR {tag}", "approve")
    with pytest.raises(ExecutionMismatch):
        pay.invoke({"amount": "20.00"})
    assert approved.result()["decision"] == "approve"
    assert ran == [] and len(calls) == 2
