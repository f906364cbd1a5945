"""check_execution: tokens of the live server, tampered ones, and tokens made here with a key of
our own to reach each check (expiry, issuer, type, algorithm, key)."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest
from conftest import APPROVER_ID, payment
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from countersign import Client, ExecutionMismatch, InvalidToken, check_execution

ISS = "https://approvals.test"
DETAILS = [{"type": "payment_initiation", "instructedAmount": {"currency": "EUR", "amount": "42.00"}, "fee": 0.5}]


def b64u(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def key() -> tuple[Ed25519PrivateKey, dict[str, Any]]:
    sk = Ed25519PrivateKey.generate()
    x = sk.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return sk, {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": b64u(x), "kid": "k1", "use": "sig", "alg": "EdDSA"}]}


def make(sk: Ed25519PrivateKey, typ: str = "at+jwt", kid: str = "k1", **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": ISS, "sub": "apv_a", "aud": "agent", "iat": now, "exp": now + 600, "jti": "j1",
            "authorization_details": DETAILS, **claims}  # fmt: skip
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, sk, algorithm="EdDSA", headers={"typ": typ, "kid": kid})


def test_valid_token_and_canonical_equality(key) -> None:
    sk, jwks = key
    claims = check_execution(make(sk), DETAILS, jwks=jwks, issuer=ISS, audience="agent")
    assert claims["sub"] == "apv_a"
    # Same values, other spelling: member order, 0.5 as 5e-1, the single object form.
    same = {"fee": 5e-1, "instructedAmount": {"amount": "42.00", "currency": "EUR"}, "type": "payment_initiation"}
    check_execution(make(sk), same, jwks=jwks, issuer=ISS)


@pytest.mark.parametrize(
    "running",
    [
        [{**DETAILS[0], "instructedAmount": {"currency": "EUR", "amount": "42.01"}}],
        [{**DETAILS[0], "fee": 0.50001}],
        [{**DETAILS[0], "extra": True}],
        DETAILS + DETAILS,
        [{k: v for k, v in DETAILS[0].items() if k != "fee"}],
    ],
)
def test_other_action_is_a_mismatch(key, running) -> None:
    sk, jwks = key
    with pytest.raises(ExecutionMismatch) as e:
        check_execution(make(sk), running, jwks=jwks, issuer=ISS)
    assert e.value.error == "execution_mismatch"
    assert "42.01" not in str(e.value), "values stay out of the message; paths are enough"


@pytest.mark.parametrize(
    ("token_kwargs", "words"),
    [
        ({"exp": int(time.time()) - 5}, "expired"),
        ({"iss": "https://evil.test"}, "not from"),
        ({"typ": "JWT"}, "not an access token"),
        ({"kid": "k2"}, "no single key"),
        ({"exp": None}, "exp"),
        ({"authorization_details": None}, "authorization_details"),
        ({"aud": "another-agent"}, "not for"),
    ],
)
def test_each_claim_check_fails_closed(key, token_kwargs, words) -> None:
    sk, jwks = key
    typ = token_kwargs.pop("typ", "at+jwt")
    kid = token_kwargs.pop("kid", "k1")
    with pytest.raises(InvalidToken) as e:
        check_execution(make(sk, typ=typ, kid=kid, **token_kwargs), DETAILS, jwks=jwks, issuer=ISS, audience="agent")
    assert words in e.value.description


def test_other_key_alg_none_and_hmac_confusion(key) -> None:
    sk, jwks = key
    with pytest.raises(InvalidToken, match="signature"):
        check_execution(make(Ed25519PrivateKey.generate()), DETAILS, jwks=jwks, issuer=ISS)
    h = b64u(json.dumps({"alg": "none", "typ": "at+jwt", "kid": "k1"}).encode())
    p = make(sk).split(".")[1]
    with pytest.raises(InvalidToken, match="EdDSA"):
        check_execution(f"{h}.{p}.", DETAILS, jwks=jwks, issuer=ISS)
    # HS256 keyed with the public key's bytes: the classic algorithm confusion.
    x = base64.urlsafe_b64decode(jwks["keys"][0]["x"] + "=")
    forged = jwt.encode(jwt.decode(make(sk), options={"verify_signature": False}), x, algorithm="HS256", headers={"typ": "at+jwt", "kid": "k1"})
    with pytest.raises(InvalidToken):
        check_execution(forged, DETAILS, jwks=jwks, issuer=ISS)
    for junk in ["", "a.b", "a.b.c", "x" * 70000]:
        with pytest.raises(InvalidToken):
            check_execution(junk, DETAILS, jwks=jwks, issuer=ISS)


def tamper_payload(token: str, change: dict[str, Any]) -> str:
    h, p, s = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))
    claims.update(change)
    return ".".join([h, b64u(json.dumps(claims, separators=(",", ":")).encode()), s])


def test_live_token(client: Client, decide, message) -> None:
    msg = message("Pay 99.00 EUR to Bob")
    details = payment("99.00", "Bob")
    req = client.request_approval(APPROVER_ID, msg, details)
    decide(msg, "approve")
    approval = client.wait_for_decision(req, timeout=30)
    token = approval.access_token
    assert jwt.get_unverified_header(token)["typ"] == "at+jwt"
    claims = client.check_execution(token, details)
    assert claims["iss"] == client.discover()["issuer"]

    # Arguments other than the approved ones.
    with pytest.raises(ExecutionMismatch):
        client.check_execution(token, payment("990.00", "Bob"))
    with pytest.raises(ExecutionMismatch):
        client.check_execution(token, payment("99.00", "Mallory"))
    # A token whose approved action was rewritten to match what the agent wants to run.
    forged = tamper_payload(token, {"authorization_details": payment("990.00", "Bob")})
    with pytest.raises(InvalidToken, match="signature"):
        client.check_execution(forged, payment("990.00", "Bob"))
    # One bit of the signature flipped.
    h, p, s = token.split(".")
    sig = bytearray(base64.urlsafe_b64decode(s + "=="))
    sig[0] ^= 1
    with pytest.raises(InvalidToken):
        client.check_execution(f"{h}.{p}.{b64u(bytes(sig))}", details)
    # The ID token is signed by the same key but is not an access token.
    assert approval.id_token
    with pytest.raises(InvalidToken, match="access token"):
        client.check_execution(approval.id_token, details)
    # The module-level function with the server's JWKS and issuer gives the same verdict.
    check_execution(token, details, jwks=client.jwks(), issuer=client.discover()["issuer"])
    with pytest.raises(InvalidToken, match="not from"):
        check_execution(token, details, jwks=client.jwks(), issuer="http://localhost:1")
