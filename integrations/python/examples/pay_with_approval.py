"""A LangChain agent step whose payment tool runs only after a person approved that exact
payment with their passkey.

    COUNTERSIGN_URL=http://127.0.0.1:8080 COUNTERSIGN_CLIENT_ID=agent-7 \
    COUNTERSIGN_CLIENT_SECRET=... COUNTERSIGN_APPROVER=apv_... \
    python examples/pay_with_approval.py 42.00 "ACME Ltd"

A scripted chat model stands in for the LLM (no network, no API key): it answers with a tool
call, and the loop below runs it as any agent loop would. Exit status 0 when the payment ran,
2 when it did not (denied, expired, server unreachable, token not for this payment).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool

import countersign
from countersign.langchain import Action, requires_approval


def describe(args: dict[str, Any]) -> Action:
    """What the approver sees and signs: one line, and the exact payment (RFC 9396)."""
    return Action(
        f"Pay {args['amount']} EUR to {args['creditor']}",
        [
            {
                "type": "payment_initiation",
                "instructedAmount": {"currency": "EUR", "amount": args["amount"]},
                "creditorName": args["creditor"],
            }
        ],
    )


def main(amount: str, creditor: str) -> int:
    client = countersign.Client(
        os.environ["COUNTERSIGN_URL"],
        os.environ["COUNTERSIGN_CLIENT_ID"],
        os.environ["COUNTERSIGN_CLIENT_SECRET"],
    )

    @requires_approval(client, approver=os.environ["COUNTERSIGN_APPROVER"], describe=describe)
    @tool
    def pay(amount: str, creditor: str) -> str:
        """Pay an amount in EUR to a creditor."""
        return f"paid {amount} EUR to {creditor}"

    model = GenericFakeChatModel(
        messages=iter(
            [
                AIMessage(
                    content="",
                    tool_calls=[
                        {"name": "pay", "args": {"amount": amount, "creditor": creditor}, "id": "call_1"}
                    ],
                )
            ]
        )
    )
    reply = model.invoke([HumanMessage(f"Please pay {creditor} {amount} EUR")])
    assert isinstance(reply, AIMessage)
    with client:
        for call in reply.tool_calls:
            print(f"asking for approval: {describe(call['args']).binding_message}", flush=True)
            try:
                result = pay.invoke({**call, "type": "tool_call"})
            except countersign.CountersignError as e:
                print(f"not run: {type(e).__name__}: {e}", flush=True)
                return 2
            assert isinstance(result, ToolMessage)
            print(result.content, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
