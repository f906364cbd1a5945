"""The CIBA wire protocol as pure functions: forms to send, answers to classify. Shared by the
sync and async clients so both behave identically (OpenID CIBA Core 1.0 sections 7, 10, 11;
RFC 6749 section 5.2 errors)."""

from __future__ import annotations

import base64
import json
import logging
import math
import time
from email.utils import parsedate_to_datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus

import httpx

from .errors import (
    AccessDenied,
    CountersignError,
    Expired,
    InvalidGrant,
    RequestRejected,
    ServerError,
    TimedOut,
    TransactionFailed,
)
from .jcs import CanonicalizationError, canonicalize

log = logging.getLogger("countersign")

CIBA_GRANT = "urn:openid:params:grant-type:ciba"
#: CIBA Core section 7.3: the interval a client uses when the server names none.
DEFAULT_INTERVAL = 5
#: CIBA Core section 11: what `slow_down` adds to the interval, for the rest of the request.
SLOW_DOWN_STEP = 5
#: Longest wait a Retry-After may impose before we give up on it (a broken header must not park
#: an agent for days).
MAX_RETRY_AFTER = 300


@dataclass(frozen=True)
class ApprovalRequest:
    """An accepted ``/bc-authorize`` request (CIBA Core section 7.3)."""

    #: The id to poll with. A bearer secret: kept out of ``repr``.
    auth_req_id: str = field(repr=False)
    #: Seconds until the request expires, as the server said.
    expires_in: int
    #: Seconds to wait between two polls, as the server said.
    interval: int
    #: ``time.monotonic()`` at which the request expires.
    expires_at: float


@dataclass(frozen=True)
class Approval:
    """The token response of an approved request (CIBA Core section 10.1.1).

    Receiving it is not permission to act: pass :attr:`access_token` to ``check_execution``
    with the action about to run.
    """

    access_token: str = field(repr=False)
    token_type: str
    expires_in: int | None
    id_token: str | None = field(repr=False)
    scope: str | None
    #: What the server says was approved (unverified here; ``check_execution`` verifies the
    #: signed copy inside the access token).
    authorization_details: Any
    raw: Mapping[str, Any] = field(repr=False)


@dataclass
class PollState:
    """How one request is polled: the interval grows on ``slow_down`` and never shrinks."""

    interval: float
    deadline: float | None  # monotonic; None waits until the server answers an end state
    expires_at: float | None  # monotonic; the request's own expiry when known
    polls: int = 0
    slow_downs: int = 0


def basic_auth(client_id: str, client_secret: str) -> str:
    """``Authorization: Basic`` with the id and secret form-urlencoded first (RFC 6749
    section 2.3.1), which the server decodes; a secret holding ``:`` or ``%`` stays intact."""
    raw = f"{quote_plus(client_id, safe='')}:{quote_plus(client_secret, safe='')}"
    return "Basic " + base64.b64encode(raw.encode("utf-8")).decode("ascii")


def details_param(authorization_details: Any) -> str:
    """The ``authorization_details`` parameter (RFC 9396): a JSON array of objects, sent in its
    canonical form so the same action is always the same bytes."""
    if isinstance(authorization_details, Mapping):
        authorization_details = [authorization_details]
    if not isinstance(authorization_details, Sequence) or isinstance(
        authorization_details, (str, bytes)
    ):
        raise TypeError("authorization_details must be a list of objects (RFC 9396)")
    if not authorization_details or not all(
        isinstance(d, Mapping) and isinstance(d.get("type"), str) for d in authorization_details
    ):
        raise ValueError("authorization_details must be objects, each with a string 'type'")
    try:
        return canonicalize(list(authorization_details)).decode("utf-8")
    except CanonicalizationError as e:
        raise ValueError(f"authorization_details cannot be sent exactly: {e}") from e


def bc_authorize_form(
    approver: str,
    binding_message: str,
    authorization_details: Any,
    requested_expiry: int | None,
    scope: str,
) -> dict[str, str]:
    form = {
        "scope": scope,
        "login_hint": approver,
        "binding_message": binding_message,
        "authorization_details": details_param(authorization_details),
    }
    if requested_expiry is not None:
        if isinstance(requested_expiry, bool) or int(requested_expiry) != requested_expiry:
            raise TypeError("requested_expiry is a whole number of seconds")
        form["requested_expiry"] = str(int(requested_expiry))
    return form


def token_form(auth_req_id: str) -> dict[str, str]:
    return {"grant_type": CIBA_GRANT, "auth_req_id": auth_req_id}


def _json_body(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def _oauth_error(resp: httpx.Response) -> tuple[str, str]:
    body = _json_body(resp)
    if isinstance(body, Mapping) and isinstance(body.get("error"), str):
        desc = body.get("error_description")
        return body["error"], desc if isinstance(desc, str) else ""
    return "server_error", f"HTTP {resp.status_code} without an OAuth error body"


def retry_after(resp: httpx.Response) -> float | None:
    """Seconds from a ``Retry-After`` header (RFC 9110 section 10.2.3; delay-seconds form, or an
    HTTP date), capped; None when absent or unreadable."""
    v = resp.headers.get("retry-after")
    if v is None:
        return None
    v = v.strip()
    if v.isdigit():
        return float(min(int(v), MAX_RETRY_AFTER))
    try:
        when = parsedate_to_datetime(v).timestamp()
    except (TypeError, ValueError):
        return None
    return float(max(0.0, min(when - time.time(), MAX_RETRY_AFTER)))


def _error_for(code: str, desc: str, status: int) -> CountersignError:
    cls: type[CountersignError] = {
        "access_denied": AccessDenied,
        "expired_token": Expired,
        "invalid_grant": InvalidGrant,
        "transaction_failed": TransactionFailed,
    }.get(code, RequestRejected if status < 500 else ServerError)
    return cls(code, desc, status)


def parse_bc_authorize(resp: httpx.Response, now: float) -> ApprovalRequest:
    """The answer of ``/bc-authorize``: the request, or the exception for its error."""
    if resp.status_code != 200:
        code, desc = _oauth_error(resp)
        raise _error_for(code, desc, resp.status_code)
    body = _json_body(resp)
    if not isinstance(body, Mapping):
        raise ServerError("server_error", "bc-authorize answered 200 without a JSON object", 200)
    auth_req_id = body.get("auth_req_id")
    expires_in = body.get("expires_in")
    interval = body.get("interval", DEFAULT_INTERVAL)
    if (
        not isinstance(auth_req_id, str)
        or not auth_req_id
        or not isinstance(expires_in, int)
        or isinstance(expires_in, bool)
        or expires_in <= 0
        or not isinstance(interval, int)
        or isinstance(interval, bool)
        or interval < 0
    ):
        raise ServerError(
            "server_error", "bc-authorize answered without auth_req_id, expires_in or interval", 200
        )
    return ApprovalRequest(
        auth_req_id=auth_req_id,
        expires_in=expires_in,
        interval=interval,
        expires_at=now + expires_in,
    )


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def parse_tokens(resp: httpx.Response) -> Approval:
    body = _json_body(resp)
    if not isinstance(body, Mapping):
        raise ServerError("server_error", "token endpoint answered 200 without a JSON object", 200)
    at = body.get("access_token")
    tt = body.get("token_type")
    if not isinstance(at, str) or not at or not isinstance(tt, str) or tt.lower() != "bearer":
        raise ServerError(
            "server_error", "token response without a Bearer access_token", resp.status_code
        )
    exp = body.get("expires_in")
    idt = body.get("id_token")
    scope = body.get("scope")
    return Approval(
        access_token=at,
        token_type=tt,
        expires_in=exp if _is_int(exp) else None,
        id_token=idt if isinstance(idt, str) else None,
        scope=scope if isinstance(scope, str) else None,
        authorization_details=body.get("authorization_details"),
        raw=body,
    )


def next_step(state: PollState, resp: httpx.Response) -> Approval | float:
    """Classifies one ``/token`` answer: the approval, or how many seconds to wait before the
    next poll. Raises the exception of an end state (denied, expired, refused, server error)."""
    state.polls += 1
    if resp.status_code == 200:
        return parse_tokens(resp)
    code, desc = _oauth_error(resp)
    hinted = retry_after(resp)
    if resp.status_code == 400 and code == "authorization_pending":
        return max(state.interval, hinted or 0.0)
    if resp.status_code == 400 and code == "slow_down":
        state.slow_downs += 1
        state.interval += SLOW_DOWN_STEP
        log.debug("slow_down: polling every %s s from now on", state.interval)
        return max(state.interval, hinted or 0.0)
    if resp.status_code in (429, 503) and hinted is not None:
        # Overload or a decision still awaiting its witnesses: the server asks for patience.
        log.debug("token endpoint answered %s %s; retrying after %s s", resp.status_code, code, hinted)
        return max(state.interval, hinted)
    raise _error_for(code, desc, resp.status_code)


def check_wait(state: PollState, wait: float, now: float) -> None:
    """Raises when the next poll would come after the caller's deadline, or long after the
    request's own expiry (a server that never says ``expired_token`` must not hold us forever)."""
    if state.deadline is not None and now + wait > state.deadline:
        raise TimedOut("timeout", "no decision within the time given to wait_for_decision")
    if state.expires_at is not None and now > state.expires_at + 2 * state.interval + 30:
        raise Expired("expired_token", "the request's expiry passed and the server still says pending")


def initial_state(
    request: ApprovalRequest | str, timeout: float | None, now: float
) -> tuple[str, PollState]:
    if timeout is not None and (not math.isfinite(timeout) or timeout < 0):
        raise ValueError("timeout is a non-negative number of seconds")
    deadline = None if timeout is None else now + timeout
    if isinstance(request, ApprovalRequest):
        return request.auth_req_id, PollState(
            interval=float(request.interval), deadline=deadline, expires_at=request.expires_at
        )
    if not isinstance(request, str) or not request:
        raise TypeError("give the ApprovalRequest or its auth_req_id")
    return request, PollState(interval=float(DEFAULT_INTERVAL), deadline=deadline, expires_at=None)


def parse_discovery(resp: httpx.Response) -> dict[str, Any]:
    if resp.status_code != 200:
        code, desc = _oauth_error(resp)
        raise ServerError(code, f"discovery answered {resp.status_code}: {desc}", resp.status_code)
    body = _json_body(resp)
    needed = ("issuer", "backchannel_authentication_endpoint", "token_endpoint", "jwks_uri")
    if not isinstance(body, dict) or not all(isinstance(body.get(k), str) for k in needed):
        raise ServerError("server_error", "discovery metadata lacks CIBA endpoints", resp.status_code)
    if CIBA_GRANT not in body.get("grant_types_supported", [CIBA_GRANT]):
        raise ServerError("server_error", "the server does not support the CIBA grant", 200)
    return body


def parse_jwks(resp: httpx.Response) -> dict[str, Any]:
    body = _json_body(resp)
    if resp.status_code != 200 or not isinstance(body, dict) or not isinstance(body.get("keys"), list):
        raise ServerError("server_error", "the JWKS could not be read", resp.status_code)
    return body
