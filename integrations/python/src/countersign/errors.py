"""The exceptions of the SDK. Every one means: do not run the action.

Each carries the OAuth ``error`` code and ``error_description`` the server sent (or, for checks
made here, a code of ours), so a caller can log exactly what failed.
"""

from __future__ import annotations

__all__ = [
    "CountersignError",
    "AccessDenied",
    "Expired",
    "InvalidGrant",
    "TransactionFailed",
    "ServerError",
    "Unreachable",
    "ExecutionMismatch",
    "InvalidToken",
    "RequestRejected",
    "TimedOut",
]


class CountersignError(Exception):
    """Base class: the approval was not obtained or not confirmed; the action must not run."""

    #: The OAuth error code (RFC 6749 section 5.2, CIBA Core section 11) or one of ours.
    error: str
    #: What failed, in words (the server's ``error_description`` when it sent one).
    description: str
    #: The HTTP status of the answer that raised it, when there was one.
    status: int | None

    def __init__(self, error: str, description: str = "", status: int | None = None) -> None:
        self.error = error
        self.description = description
        self.status = status
        super().__init__(f"{error}: {description}" if description else error)


class AccessDenied(CountersignError):
    """The approver denied the request (``access_denied``)."""


class Expired(CountersignError):
    """The request expired before a decision, or before its approval was collected
    (``expired_token``)."""


class InvalidGrant(CountersignError):
    """The ``auth_req_id`` is unknown, not this client's, or its tokens were already issued
    (``invalid_grant``)."""


class TransactionFailed(CountersignError):
    """The server could not complete the decision or issue the tokens (``transaction_failed``)."""


class ServerError(CountersignError):
    """The server answered with a 5xx, or with something that is not a valid CIBA answer."""


class Unreachable(CountersignError):
    """The server could not be reached (connection refused, DNS, TLS, timeout)."""


class RequestRejected(CountersignError):
    """``/bc-authorize`` refused the request (``invalid_request``, ``unknown_user_id``,
    ``invalid_client``, ``invalid_authorization_details``, ``too_many_requests``…)."""


class TimedOut(CountersignError):
    """:meth:`Client.wait_for_decision` gave up after its ``timeout``; the request may still be
    decided later (``timeout``)."""


class InvalidToken(CountersignError):
    """The access token did not verify: signature, issuer, expiry, type, or form."""


class ExecutionMismatch(CountersignError):
    """The token is valid but approves a different action than the one about to run."""
