"""The agent-side half of the execution check: before an action runs, its access token must be
a valid token of the server (EdDSA signature under the server's JWKS, issuer, expiry, type
``at+jwt``) whose ``authorization_details`` are exactly the action about to run, compared by
their RFC 8785 canonical forms. Drift between what was approved and what runs is caught before
the side effect."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jwt
from jwt.exceptions import (
    ExpiredSignatureError,
    ImmatureSignatureError,
    InvalidAudienceError,
    InvalidIssuerError,
    InvalidSignatureError,
    MissingRequiredClaimError,
    PyJWKError,
    PyJWTError,
)

from .errors import ExecutionMismatch, InvalidToken
from .jcs import CanonicalizationError, canonicalize

__all__ = ["check_execution", "canonical_action", "kid_known"]

#: RFC 9068 section 2.1: the ``typ`` of a JWT access token (the media-type form is also allowed).
_ACCESS_TOKEN_TYPES = ("at+jwt", "application/at+jwt")
#: Longest token accepted; the server's are a few KiB (authorization_details up to 16 KiB).
_MAX_TOKEN_BYTES = 64 * 1024


def canonical_action(action: Any) -> bytes:
    """The RFC 8785 form of an action given as ``authorization_details`` (a list of objects, or
    one object standing for a one-element list)."""
    if isinstance(action, Mapping):
        action = [action]
    if not isinstance(action, Sequence) or isinstance(action, (str, bytes, bytearray)):
        raise TypeError("the action is an authorization_details list (RFC 9396) or one object")
    try:
        return canonicalize(list(action))
    except CanonicalizationError as e:
        raise ExecutionMismatch("execution_mismatch", f"the action has no canonical form: {e}") from e


def _header(token: str) -> dict[str, Any]:
    if not isinstance(token, str) or len(token) > _MAX_TOKEN_BYTES or token.count(".") != 2:
        raise InvalidToken("invalid_token", "not a compact JWS")
    try:
        return jwt.get_unverified_header(token)
    except PyJWTError as e:
        raise InvalidToken("invalid_token", f"unreadable header: {e}") from e


def _keys(jwks: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    keys = jwks.get("keys") if isinstance(jwks, Mapping) else None
    if not isinstance(keys, list):
        raise InvalidToken("invalid_token", "the JWKS has no keys list")
    return [k for k in keys if isinstance(k, Mapping)]


def kid_known(token: str, jwks: Mapping[str, Any]) -> bool:
    """Whether the JWKS holds the key the token's header names (False for unreadable tokens)."""
    try:
        kid = _header(token).get("kid")
        return any(k.get("kid") == kid for k in _keys(jwks))
    except InvalidToken:
        return False


def check_execution(
    token: str,
    action: Any,
    *,
    jwks: Mapping[str, Any],
    issuer: str,
    audience: str | None = None,
    leeway: float = 0,
) -> dict[str, Any]:
    """Verifies ``token`` and that it approves exactly ``action``; returns its claims.

    ``jwks`` is the server's JWKS document (``GET /jwks.json``), ``issuer`` its OpenID issuer
    (discovery's ``issuer``), ``audience`` the client id when given. The signature must be
    EdDSA (Ed25519, RFC 8037) by the key the header's ``kid`` names; ``typ`` must be
    ``at+jwt`` (RFC 9068); ``iss``, ``exp`` and ``iat`` must be present and valid.

    Raises :class:`InvalidToken` when any of that fails, and :class:`ExecutionMismatch` when the
    token is valid but its ``authorization_details`` differ from ``action`` (by RFC 8785
    canonical JSON: member order and number spelling do not matter, anything else does).
    """
    header = _header(token)
    if header.get("alg") != "EdDSA":
        # Fixed before any key is chosen: no algorithm from the token picks how it is checked.
        raise InvalidToken("invalid_token", f"algorithm {header.get('alg')!r} is not EdDSA")
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower() not in _ACCESS_TOKEN_TYPES:
        raise InvalidToken("invalid_token", f"type {typ!r} is not an access token (at+jwt)")
    kid = header.get("kid")
    matches = [k for k in _keys(jwks) if k.get("kid") == kid]
    if len(matches) != 1:
        raise InvalidToken("invalid_token", f"no single key {kid!r} in the server's JWKS")
    jwk = dict(matches[0])
    if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
        raise InvalidToken("invalid_token", "the token's key is not an Ed25519 key")
    try:
        key = jwt.PyJWK(jwk, algorithm="EdDSA")
    except PyJWKError as e:
        raise InvalidToken("invalid_token", f"the token's key is unusable: {e}") from e
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key=key.key,
            algorithms=["EdDSA"],
            issuer=issuer,
            audience=audience,
            leeway=leeway,
            options={
                "require": ["iss", "exp", "iat"],
                "verify_aud": audience is not None,
            },
        )
    except ExpiredSignatureError as e:
        raise InvalidToken("invalid_token", "the token has expired") from e
    except InvalidSignatureError as e:
        raise InvalidToken("invalid_token", "the token's signature does not verify") from e
    except InvalidIssuerError as e:
        raise InvalidToken("invalid_token", f"the token is not from {issuer}") from e
    except InvalidAudienceError as e:
        raise InvalidToken("invalid_token", f"the token is not for {audience}") from e
    except ImmatureSignatureError as e:
        raise InvalidToken("invalid_token", "the token is issued in the future") from e
    except MissingRequiredClaimError as e:
        raise InvalidToken("invalid_token", str(e)) from e
    except PyJWTError as e:
        raise InvalidToken("invalid_token", f"the token does not verify: {e}") from e

    approved = claims.get("authorization_details")
    if not isinstance(approved, list):
        raise InvalidToken("invalid_token", "the token carries no authorization_details")
    expected = canonical_action(action)
    try:
        got = canonicalize(approved)
    except CanonicalizationError as e:
        raise InvalidToken("invalid_token", f"authorization_details: {e}") from e
    if got != expected:
        raise ExecutionMismatch(
            "execution_mismatch",
            f"the token approves a different action ({_first_difference(approved, action)})",
        )
    return claims


def _first_difference(approved: Any, running: Any, path: str = "authorization_details") -> str:
    """Where two JSON values first differ, for the error message (not for the decision)."""
    if isinstance(running, Mapping) and isinstance(approved, list) and path == "authorization_details":
        running = [running]
    if isinstance(approved, Mapping) and isinstance(running, Mapping):
        for k in sorted(set(approved) | set(running)):
            if k not in approved:
                return f"{path}.{k} is not approved"
            if k not in running:
                return f"{path}.{k} is approved but missing"
            if canonicalize(approved[k]) != canonicalize(running[k]):
                return _first_difference(approved[k], running[k], f"{path}.{k}")
    elif isinstance(approved, list) and isinstance(running, Sequence) and not isinstance(running, str):
        if len(approved) != len(running):
            return f"{path} has {len(running)} items, {len(approved)} approved"
        for i, (a, r) in enumerate(zip(approved, running)):
            if canonicalize(a) != canonicalize(r):
                return _first_difference(a, r, f"{path}[{i}]")
    return f"{path} differs"
