"""CIBA clients for a Countersign server: :class:`Client` (blocking) and :class:`AsyncClient`.

Both authenticate with ``client_secret_basic``, find the endpoints by OpenID discovery, and
raise an exception for every outcome that is not an approval, so code that runs an action
after ``wait_for_decision`` returns cannot run it on a denial, an expiry or an error.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx

from . import _protocol as p
from ._protocol import Approval, ApprovalRequest
from .errors import Unreachable
from .execution import check_execution as _check_execution
from .execution import kid_known

__all__ = ["Client", "AsyncClient", "Approval", "ApprovalRequest"]

_USER_AGENT = "countersign-python/0.1"


class _Base:
    def __init__(self, url: str, client_id: str, client_secret: str) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError("url must be an http:// or https:// URL")
        if not client_id or not client_secret:
            raise ValueError("client_id and client_secret are required")
        self.url = url.rstrip("/")
        self.client_id = client_id
        self._auth = p.basic_auth(client_id, client_secret)
        self._metadata: dict[str, Any] | None = None
        self._jwks: dict[str, Any] | None = None

    def __repr__(self) -> str:  # the secret stays out of logs
        return f"{type(self).__name__}(url={self.url!r}, client_id={self.client_id!r})"

    def _headers(self) -> dict[str, str]:
        return {"authorization": self._auth, "accept": "application/json"}


def _unreachable(e: httpx.TransportError, what: str) -> Unreachable:
    return Unreachable("unreachable", f"{what}: {type(e).__name__}: {e}")


class Client(_Base):
    """Blocking CIBA client.

    >>> client = Client("https://approvals.example", "agent-7", secret)  # doctest: +SKIP
    >>> req = client.request_approval("apv_...", "Pay 42 EUR to ACME", [{"type": "payment", ...}])
    >>> approval = client.wait_for_decision(req)              # raises unless approved
    >>> client.check_execution(approval.access_token, action)  # raises unless it is this action
    """

    def __init__(
        self,
        url: str,
        client_id: str,
        client_secret: str,
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(url, client_id, client_secret)
        self._http = httpx.Client(
            timeout=timeout,
            transport=transport,
            headers={"user-agent": _USER_AGENT},
            follow_redirects=False,
        )
        self._sleep = sleep

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get(self, url: str, what: str) -> httpx.Response:
        try:
            return self._http.get(url)
        except httpx.TransportError as e:
            raise _unreachable(e, what) from e

    def _post(self, url: str, form: Mapping[str, str], what: str) -> httpx.Response:
        try:
            return self._http.post(url, data=dict(form), headers=self._headers())
        except httpx.TransportError as e:
            raise _unreachable(e, what) from e

    def discover(self) -> dict[str, Any]:
        """The server's OpenID discovery metadata (CIBA Core section 4), fetched once."""
        if self._metadata is None:
            self._metadata = p.parse_discovery(
                self._get(f"{self.url}/.well-known/openid-configuration", "discovery")
            )
        return self._metadata

    def request_approval(
        self,
        approver: str,
        binding_message: str,
        authorization_details: Any,
        requested_expiry: int | None = None,
        scope: str = "openid",
    ) -> ApprovalRequest:
        """Asks ``approver`` (an approver id or e-mail address, sent as ``login_hint``) to
        approve the action ``authorization_details`` (RFC 9396 array), shown with
        ``binding_message``. Raises :class:`RequestRejected` when the server refuses it."""
        form = p.bc_authorize_form(
            approver, binding_message, authorization_details, requested_expiry, scope
        )
        endpoint = self.discover()["backchannel_authentication_endpoint"]
        return p.parse_bc_authorize(self._post(endpoint, form, "bc-authorize"), time.monotonic())

    def poll(self, request: ApprovalRequest | str) -> Approval | None:
        """One token request: the approval, or None while the approver has not decided.
        Raises on every end state other than an approval. It keeps no interval (``slow_down``
        also returns None): :meth:`wait_for_decision` does that."""
        auth_req_id, state = p.initial_state(request, None, time.monotonic())
        resp = self._post(self.discover()["token_endpoint"], p.token_form(auth_req_id), "token")
        step = p.next_step(state, resp)
        return step if isinstance(step, Approval) else None

    def wait_for_decision(
        self, request: ApprovalRequest | str, timeout: float | None = None
    ) -> Approval:
        """Polls the token endpoint until the approver decides (CIBA Core section 10/11):
        waits ``interval`` between polls, adds 5 s on ``slow_down``, honours ``Retry-After``.
        Returns the :class:`Approval`; raises :class:`AccessDenied`, :class:`Expired`,
        :class:`InvalidGrant`, :class:`TransactionFailed`, :class:`ServerError`,
        :class:`Unreachable`, or :class:`TimedOut` once ``timeout`` seconds have passed."""
        auth_req_id, state = p.initial_state(request, timeout, time.monotonic())
        endpoint = self.discover()["token_endpoint"]
        while True:
            step = p.next_step(state, self._post(endpoint, p.token_form(auth_req_id), "token"))
            if isinstance(step, Approval):
                return step
            p.check_wait(state, step, time.monotonic())
            self._sleep(step)

    def jwks(self, refresh: bool = False) -> dict[str, Any]:
        """The server's token keys (``jwks_uri``), cached until ``refresh``."""
        if self._jwks is None or refresh:
            self._jwks = p.parse_jwks(self._get(self.discover()["jwks_uri"], "jwks"))
        return self._jwks

    def check_execution(
        self, token: str, action: Any, *, audience: str | None = None, leeway: float = 0
    ) -> dict[str, Any]:
        """:func:`countersign.check_execution` with this server's issuer and JWKS (fetched
        again once when the token names a key not seen yet: keys rotate)."""
        jwks = self.jwks()
        if _needs_refresh(token, jwks):
            jwks = self.jwks(refresh=True)
        return _check_execution(
            token,
            action,
            jwks=jwks,
            issuer=self.discover()["issuer"],
            audience=audience if audience is not None else self.client_id,
            leeway=leeway,
        )


class AsyncClient(_Base):
    """The :class:`Client` API with ``async`` methods, on ``httpx.AsyncClient``."""

    def __init__(
        self,
        url: str,
        client_id: str,
        client_secret: str,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        super().__init__(url, client_id, client_secret)
        self._http = httpx.AsyncClient(
            timeout=timeout,
            transport=transport,
            headers={"user-agent": _USER_AGENT},
            follow_redirects=False,
        )
        self._sleep = sleep

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _get(self, url: str, what: str) -> httpx.Response:
        try:
            return await self._http.get(url)
        except httpx.TransportError as e:
            raise _unreachable(e, what) from e

    async def _post(self, url: str, form: Mapping[str, str], what: str) -> httpx.Response:
        try:
            return await self._http.post(url, data=dict(form), headers=self._headers())
        except httpx.TransportError as e:
            raise _unreachable(e, what) from e

    async def discover(self) -> dict[str, Any]:
        """See :meth:`Client.discover`."""
        if self._metadata is None:
            self._metadata = p.parse_discovery(
                await self._get(f"{self.url}/.well-known/openid-configuration", "discovery")
            )
        return self._metadata

    async def request_approval(
        self,
        approver: str,
        binding_message: str,
        authorization_details: Any,
        requested_expiry: int | None = None,
        scope: str = "openid",
    ) -> ApprovalRequest:
        """See :meth:`Client.request_approval`."""
        form = p.bc_authorize_form(
            approver, binding_message, authorization_details, requested_expiry, scope
        )
        endpoint = (await self.discover())["backchannel_authentication_endpoint"]
        resp = await self._post(endpoint, form, "bc-authorize")
        return p.parse_bc_authorize(resp, time.monotonic())

    async def poll(self, request: ApprovalRequest | str) -> Approval | None:
        """See :meth:`Client.poll`."""
        auth_req_id, state = p.initial_state(request, None, time.monotonic())
        endpoint = (await self.discover())["token_endpoint"]
        step = p.next_step(state, await self._post(endpoint, p.token_form(auth_req_id), "token"))
        return step if isinstance(step, Approval) else None

    async def wait_for_decision(
        self, request: ApprovalRequest | str, timeout: float | None = None
    ) -> Approval:
        """See :meth:`Client.wait_for_decision`."""
        auth_req_id, state = p.initial_state(request, timeout, time.monotonic())
        endpoint = (await self.discover())["token_endpoint"]
        while True:
            resp = await self._post(endpoint, p.token_form(auth_req_id), "token")
            step = p.next_step(state, resp)
            if isinstance(step, Approval):
                return step
            p.check_wait(state, step, time.monotonic())
            await self._sleep(step)

    async def jwks(self, refresh: bool = False) -> dict[str, Any]:
        """See :meth:`Client.jwks`."""
        if self._jwks is None or refresh:
            self._jwks = p.parse_jwks(await self._get((await self.discover())["jwks_uri"], "jwks"))
        return self._jwks

    async def check_execution(
        self, token: str, action: Any, *, audience: str | None = None, leeway: float = 0
    ) -> dict[str, Any]:
        """See :meth:`Client.check_execution`."""
        jwks = await self.jwks()
        if _needs_refresh(token, jwks):
            jwks = await self.jwks(refresh=True)
        return _check_execution(
            token,
            action,
            jwks=jwks,
            issuer=(await self.discover())["issuer"],
            audience=audience if audience is not None else self.client_id,
            leeway=leeway,
        )


def _needs_refresh(token: str, jwks: Mapping[str, Any]) -> bool:
    return not kid_known(token, jwks)
