"""An approver driving the endpoints the approval pages use (/v1/enrol/*, /v1/session/*,
/v1/inbox, /v1/requests/<id>/decide/*) with a :class:`SoftPasskey`, as the pages' script does."""

from __future__ import annotations

import hashlib
import time
from typing import Any
from urllib.parse import quote, urlparse

import httpx

from countersign.jcs import canonicalize
from passkey import SoftPasskey, b64u_decode


class Approver:
    def __init__(self, url: str, port: int) -> None:
        self.url = url
        # A WebAuthn RP ID cannot be an IP address: the pages run on http://localhost:PORT, an
        # origin the server allows by default.
        self.passkey = SoftPasskey("localhost", f"http://localhost:{port}")
        self.http = httpx.Client(base_url=url, timeout=10.0)
        self.csrf = ""

    def close(self) -> None:
        self.http.close()

    def _post(self, path: str, body: Any, session: bool = True) -> httpx.Response:
        headers = {"x-csrf-token": self.csrf} if session and self.csrf else {}
        return self.http.post(path, json=body, headers=headers)

    def enrol(self, link: str) -> dict[str, Any]:
        token = urlparse(link).path.rsplit("/", 1)[-1]
        start = self._post("/v1/enrol/start", {"token": token}, session=False)
        assert start.status_code == 200, start.text
        credential = self.passkey.register(start.json()["publicKey"])
        fin = self._post(
            "/v1/enrol/finish",
            {"ceremony_id": start.json()["ceremony_id"], "token": token, "credential": credential},
            session=False,
        )
        assert fin.status_code == 201, fin.text
        return fin.json()

    def sign_in(self) -> None:
        start = self._post("/v1/session/start", {}, session=False)
        assert start.status_code == 200, start.text
        challenge = b64u_decode(start.json()["publicKey"]["challenge"])
        fin = self._post(
            "/v1/session/finish",
            {"ceremony_id": start.json()["ceremony_id"], "credential": self.passkey.assert_(challenge)},
            session=False,
        )
        assert fin.status_code == 200, fin.text
        assert "httponly" in fin.headers.get("set-cookie", "").lower()
        self.csrf = fin.json()["csrf_token"]  # the session cookie stays in self.http's jar

    def inbox(self) -> list[dict[str, Any]]:
        r = self.http.get("/v1/inbox")
        assert r.status_code == 200, r.text
        requests: list[dict[str, Any]] = r.json()["requests"]
        return requests

    def wait_for_request(self, binding_message: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for q in self.inbox():
                if q.get("binding_message") == binding_message:
                    return q
            if time.monotonic() > deadline:
                raise AssertionError(f"no request {binding_message!r} in the inbox")
            time.sleep(0.05)

    def decide(self, request_id: str, decision: str) -> dict[str, Any]:
        """Checks independently that the challenge is nonce || SHA-256(JCS(statement)), signs
        it with the passkey and finishes; returns the server's answer."""
        rid = quote(request_id, safe="")
        start = self._post(f"/v1/requests/{rid}/decide/start", {"decision": decision})
        assert start.status_code == 200, start.text
        body = start.json()
        statement = body["statement"]
        assert statement["decision"] == decision and statement["request_id"] == request_id
        canonical = canonicalize(statement)
        assert canonical.decode() == body["statement_canonical"], "our JCS equals the server's"
        digest = hashlib.sha256(canonical).hexdigest()
        assert digest == body["statement_hash"]
        challenge = b64u_decode(body["publicKey"]["challenge"])
        assert challenge.hex() == body["nonce"] + digest, "challenge = nonce || SHA-256(statement)"
        fin = self._post(
            f"/v1/requests/{rid}/decide/finish",
            {"decision": decision, "credential": self.passkey.assert_(challenge)},
        )
        assert fin.status_code == 201, fin.text
        result: dict[str, Any] = fin.json()
        return result

    def decide_when_asked(self, binding_message: str, decision: str) -> dict[str, Any]:
        return self.decide(self.wait_for_request(binding_message)["request_id"], decision)
