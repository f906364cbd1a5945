"""A software passkey (ES256) for the tests, written from the WebAuthn Level 3 and CTAP2 specs
with ``cryptography`` only: it builds clientDataJSON, authenticatorData and a ``none``
attestation object, and signs ``authenticatorData || SHA-256(clientDataJSON)`` as a platform
authenticator and browser would."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

FLAG_UP = 0x01
FLAG_UV = 0x04
FLAG_AT = 0x40


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64u_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _head(major: int, n: int) -> bytes:
    if n < 24:
        return bytes([(major << 5) | n])
    if n < 0x100:
        return bytes([(major << 5) | 24, n])
    if n < 0x10000:
        return bytes([(major << 5) | 25]) + struct.pack(">H", n)
    return bytes([(major << 5) | 26]) + struct.pack(">I", n)


def cbor(v: Any) -> bytes:
    """RFC 8949 encoding of the types an attestation object needs; dict keys keep their order
    (CTAP2 canonical order is the caller's job)."""
    if isinstance(v, bool):
        raise TypeError("cbor: booleans are not needed here")
    if isinstance(v, int):
        return _head(0, v) if v >= 0 else _head(1, -1 - v)
    if isinstance(v, str):
        b = v.encode("utf-8")
        return _head(3, len(b)) + b
    if isinstance(v, bytes):
        return _head(2, len(v)) + v
    if isinstance(v, list):
        return _head(4, len(v)) + b"".join(cbor(x) for x in v)
    if isinstance(v, dict):
        return _head(5, len(v)) + b"".join(cbor(k) + cbor(x) for k, x in v.items())
    raise TypeError(f"cbor: unsupported {type(v).__name__}")


class SoftPasskey:
    def __init__(self, rp_id: str, origin: str) -> None:
        self.rp_id = rp_id
        self.origin = origin
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.credential_id = os.urandom(32)
        self.sign_count = 0

    def cose_public_key(self) -> bytes:
        nums = self.key.public_key().public_numbers()
        # COSE_Key (RFC 9053): kty EC2, alg ES256, crv P-256, x, y; CTAP2 canonical key order.
        return cbor(
            {1: 2, 3: -7, -1: 1, -2: nums.x.to_bytes(32, "big"), -3: nums.y.to_bytes(32, "big")}
        )

    def client_data_json(self, typ: str, challenge: bytes) -> bytes:
        # Member order as Chromium writes it.
        return json.dumps(
            {"type": typ, "challenge": b64u(challenge), "origin": self.origin, "crossOrigin": False},
            separators=(",", ":"),
        ).encode("utf-8")

    def authenticator_data(self, flags: int, attested: bool) -> bytes:
        head = hashlib.sha256(self.rp_id.encode()).digest() + bytes([flags])
        head += struct.pack(">I", self.sign_count)
        if not attested:
            return head
        aaguid = bytes(16)
        return (
            head
            + aaguid
            + struct.pack(">H", len(self.credential_id))
            + self.credential_id
            + self.cose_public_key()
        )

    def register(self, options: dict[str, Any]) -> dict[str, Any]:
        """navigator.credentials.create() for the server's options: what the page would send."""
        rp = options.get("rp") or {}
        if rp.get("id") and rp["id"] != self.rp_id:
            raise ValueError(f"registration for RP {rp['id']}, passkey is for {self.rp_id}")
        cdj = self.client_data_json("webauthn.create", b64u_decode(options["challenge"]))
        auth_data = self.authenticator_data(FLAG_UP | FLAG_UV | FLAG_AT, attested=True)
        att = cbor({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return {
            "id": b64u(self.credential_id),
            "rawId": b64u(self.credential_id),
            "type": "public-key",
            "response": {"attestationObject": b64u(att), "clientDataJSON": b64u(cdj)},
        }

    def assert_(self, challenge: bytes, flags: int = FLAG_UP | FLAG_UV) -> dict[str, Any]:
        """navigator.credentials.get() over ``challenge``: what the page would send."""
        self.sign_count += 1
        cdj = self.client_data_json("webauthn.get", challenge)
        auth_data = self.authenticator_data(flags, attested=False)
        # ECDSA over authenticatorData || SHA-256(clientDataJSON); cryptography gives DER, as
        # WebAuthn wants (not the raw r || s of WebCrypto).
        sig = self.key.sign(auth_data + hashlib.sha256(cdj).digest(), ec.ECDSA(hashes.SHA256()))
        return {
            "id": b64u(self.credential_id),
            "rawId": b64u(self.credential_id),
            "type": "public-key",
            "response": {
                "authenticatorData": b64u(auth_data),
                "clientDataJSON": b64u(cdj),
                "signature": b64u(sig),
                "userHandle": None,
            },
        }
