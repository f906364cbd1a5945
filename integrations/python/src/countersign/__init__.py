"""Countersign for Python agents: ask a person to approve one exact action over OpenID CIBA,
wait for their passkey-signed decision, and check before acting that the token approves
exactly the action about to run.

The LangChain decorator lives in :mod:`countersign.langchain` (needs ``langchain-core``).
"""

from ._protocol import Approval, ApprovalRequest
from .client import AsyncClient, Client
from .errors import (
    AccessDenied,
    CountersignError,
    ExecutionMismatch,
    Expired,
    InvalidGrant,
    InvalidToken,
    RequestRejected,
    ServerError,
    TimedOut,
    TransactionFailed,
    Unreachable,
)
from .execution import canonical_action, check_execution
from .jcs import CanonicalizationError, canonicalize

__all__ = [
    "AccessDenied",
    "Approval",
    "ApprovalRequest",
    "AsyncClient",
    "CanonicalizationError",
    "Client",
    "CountersignError",
    "ExecutionMismatch",
    "Expired",
    "InvalidGrant",
    "InvalidToken",
    "RequestRejected",
    "ServerError",
    "TimedOut",
    "TransactionFailed",
    "Unreachable",
    "canonical_action",
    "canonicalize",
    "check_execution",
]

__version__ = "0.1.0"
