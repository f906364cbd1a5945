"""A LangChain tool decorator: the tool's body runs only after a person approved this exact call
with their passkey, and after the access token was checked against the arguments about to run.

    @requires_approval(client, approver="apv_...", describe=lambda a: Action(
        f"Pay {a['amount']} EUR to {a['to']}",
        [{"type": "payment_initiation", "amount": a["amount"], "creditor": a["to"]}]))
    @tool
    def pay(amount: str, to: str) -> str:
        ...

Needs ``langchain-core`` (``pip install countersign[langchain]``).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import threading
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool, StructuredTool, ToolException

from .client import AsyncClient, Client
from .errors import CountersignError, InvalidToken

__all__ = ["Action", "requires_approval", "PREAPPROVED_TOKEN_KEY"]

#: ``config["configurable"][PREAPPROVED_TOKEN_KEY]``: an access token obtained beforehand (for
#: example by a planning step, or a graph node that asked first). The tool then asks no one and
#: runs only if that token approves exactly this call.
PREAPPROVED_TOKEN_KEY = "countersign_access_token"


class Action(NamedTuple):
    """What the approver is shown and signs: a one-line ``binding_message`` and the exact action
    as RFC 9396 ``authorization_details`` (a list of objects, each with a ``type``)."""

    binding_message: str
    authorization_details: list[dict[str, Any]]


def _default_describe(name: str) -> Callable[[dict[str, Any]], Action]:
    def describe(args: dict[str, Any]) -> Action:
        return Action(
            f"Run the tool {name}",
            [{"type": "tool_call", "tool": name, "arguments": args}],
        )

    return describe


def _json_default(o: Any) -> Any:
    dump = getattr(o, "model_dump", None)
    if callable(dump):  # pydantic v2 models
        return dump(mode="json")
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return dataclasses.asdict(o)
    raise TypeError(f"a {type(o).__name__} argument cannot be shown to an approver as JSON")


def _as_json(args: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments as plain JSON values: what ``describe`` sees, and what is approved."""
    try:
        value = json.loads(json.dumps(dict(args), default=_json_default, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise ValueError(f"the tool's arguments cannot be approved: {e}") from e
    if not isinstance(value, dict):
        raise ValueError("the tool's arguments are not an object")
    return value


def _preapproved(config: RunnableConfig | None) -> str | None:
    token = ((config or {}).get("configurable") or {}).get(PREAPPROVED_TOKEN_KEY)
    if token is None:
        return None
    if not isinstance(token, str) or not token:
        raise InvalidToken("invalid_token", f"configurable {PREAPPROVED_TOKEN_KEY} is not a token")
    return token


class _Guard:
    """The part shared by the sync and async paths."""

    def __init__(
        self,
        inner: BaseTool,
        approver: str | Callable[[dict[str, Any]], str],
        describe: Callable[[dict[str, Any]], Action | tuple[str, Any]],
    ) -> None:
        self.inner = inner
        self.approver = approver
        self.describe = describe
        self.used: set[str] = set()
        self.lock = threading.Lock()

    def action(self, frozen: Mapping[str, Any]) -> Action:
        got = self.describe(_as_json(frozen))
        binding_message, details = got
        if not isinstance(binding_message, str):
            raise TypeError("describe must return (binding_message, authorization_details)")
        return Action(binding_message, details)

    def who(self, frozen: Mapping[str, Any]) -> str:
        return self.approver(_as_json(frozen)) if callable(self.approver) else self.approver

    def spend(self, claims: Mapping[str, Any]) -> None:
        """One approval, one run: a token is refused once it has run the tool (in this process)."""
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise InvalidToken("invalid_token", "the token has no jti")
        with self.lock:
            if jti in self.used:
                raise InvalidToken("invalid_token", "this approval was already used to run the tool")
            self.used.add(jti)


def requires_approval(
    client: Client | AsyncClient,
    *,
    approver: str | Callable[[dict[str, Any]], str],
    describe: Callable[[dict[str, Any]], Action | tuple[str, Any]] | None = None,
    requested_expiry: int | None = None,
    timeout: float | None = None,
    scope: str = "openid",
    report_to_model: bool = False,
) -> Callable[[BaseTool], StructuredTool]:
    """Wraps a LangChain tool so each call asks ``approver`` first and runs only on approval.

    For every call: the arguments are frozen (a deep copy), ``describe(args)`` (args as plain
    JSON) gives the :class:`Action` to show and sign, the approval is requested and waited for,
    and just before the body runs ``describe`` is applied again to the frozen arguments and
    ``check_execution`` verifies the token approves exactly that; then the body runs once with
    those frozen arguments. A denial, an expiry, an unreachable server, an invalid token or a
    different action raises the matching :class:`~countersign.CountersignError` and the body
    does not run. With ``report_to_model`` the error is instead returned to the model as the
    tool's output (LangChain's ``handle_tool_error``), the body still not run.

    ``client`` is a :class:`Client` (the tool runs with ``invoke``, and ``ainvoke`` in a
    thread) or an :class:`AsyncClient` (``ainvoke`` only). ``approver`` is an approver id or
    e-mail address, or a function of the arguments giving one. A token put in
    ``config["configurable"]["countersign_access_token"]`` is used instead of asking.
    """
    if not isinstance(client, (Client, AsyncClient)):
        raise TypeError("client is a countersign Client or AsyncClient")
    sync_client = client if isinstance(client, Client) else None
    async_client = client if isinstance(client, AsyncClient) else None

    def wrap(inner: BaseTool) -> StructuredTool:
        if not isinstance(inner, BaseTool):
            raise TypeError("requires_approval wraps a LangChain tool: put it above @tool")
        guard = _Guard(inner, approver, describe or _default_describe(inner.name))

        def run(countersign_run_config: RunnableConfig, **kwargs: Any) -> Any:
            if sync_client is None:  # not registered as func then; kept for the type checker
                raise TypeError("this tool was made with an AsyncClient: use ainvoke")
            frozen = copy.deepcopy(kwargs)
            try:
                token = _preapproved(countersign_run_config)
                if token is None:
                    asked = guard.action(frozen)
                    req = sync_client.request_approval(
                        guard.who(frozen),
                        asked.binding_message,
                        asked.authorization_details,
                        requested_expiry=requested_expiry,
                        scope=scope,
                    )
                    token = sync_client.wait_for_decision(req, timeout=timeout).access_token
                claims = sync_client.check_execution(token, guard.action(frozen).authorization_details)
                guard.spend(claims)
            except CountersignError as e:
                if report_to_model:
                    raise ToolException(f"not run: {e}") from e
                raise
            return inner.invoke(frozen, config=countersign_run_config)

        async def arun(countersign_run_config: RunnableConfig, **kwargs: Any) -> Any:
            if async_client is None:
                raise TypeError("this tool was made with a Client")
            frozen = copy.deepcopy(kwargs)
            try:
                token = _preapproved(countersign_run_config)
                if token is None:
                    asked = guard.action(frozen)
                    req = await async_client.request_approval(
                        guard.who(frozen),
                        asked.binding_message,
                        asked.authorization_details,
                        requested_expiry=requested_expiry,
                        scope=scope,
                    )
                    token = (await async_client.wait_for_decision(req, timeout=timeout)).access_token
                claims = await async_client.check_execution(
                    token, guard.action(frozen).authorization_details
                )
                guard.spend(claims)
            except CountersignError as e:
                if report_to_model:
                    raise ToolException(f"not run: {e}") from e
                raise
            return await inner.ainvoke(frozen, config=countersign_run_config)

        sync = sync_client is not None
        if inner.args_schema is None:
            raise TypeError("the tool has no argument schema to show the approver")
        return StructuredTool(
            name=inner.name,
            description=inner.description,
            args_schema=inner.args_schema,
            func=run if sync else None,
            coroutine=None if sync else arun,
            return_direct=inner.return_direct,
            handle_tool_error=report_to_model,
            response_format=inner.response_format,
            metadata={**(inner.metadata or {}), "countersign": True},
        )

    return wrap
