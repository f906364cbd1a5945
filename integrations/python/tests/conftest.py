"""Fixtures: one real countersign server for the session (fresh data dir, 127.0.0.1, an
ephemeral port), a client registered through its admin CLI, and an approver enrolled with a
software passkey and signed in."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from approver import Approver  # noqa: E402
from server import Server  # noqa: E402

import countersign  # noqa: E402

CLIENT_ID = "py-agent"
CLIENT_SECRET = "py-secret-0123456789abcdef"
APPROVER_ID = "apv_py_tests"


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    # --min-expiry 1: the expiry test asks for a 1-second request.
    s = Server(["--min-expiry", "1"])
    s.start()
    try:
        s.add_client(CLIENT_ID, CLIENT_SECRET)
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="session")
def approver(server: Server) -> Iterator[Approver]:
    link = server.add_approver(APPROVER_ID, "py-approver@example.com", "Py Approver")
    assert link.startswith(f"{server.url}/enrol/")
    a = Approver(server.url, server.port)
    assert a.enrol(link)["approver_id"] == APPROVER_ID
    a.sign_in()
    yield a
    a.close()


@pytest.fixture
def client(server: Server) -> Iterator[countersign.Client]:
    with countersign.Client(server.url, CLIENT_ID, CLIENT_SECRET) as c:
        yield c


@pytest.fixture
async def aclient(server: Server) -> Any:
    async with countersign.AsyncClient(server.url, CLIENT_ID, CLIENT_SECRET) as c:
        yield c


@pytest.fixture
def decide(approver: Approver) -> Iterator[Callable[[str, str], Future[dict[str, Any]]]]:
    """decide(binding_message, "approve"|"deny"): decides in the background once the request
    shows up in the approver's inbox; the future holds the server's answer."""
    pool = ThreadPoolExecutor(max_workers=1)

    def run(binding_message: str, decision: str) -> Future[dict[str, Any]]:
        return pool.submit(approver.decide_when_asked, binding_message, decision)

    yield run
    pool.shutdown(wait=True)


@pytest.fixture
def message() -> Callable[[str], str]:
    """A binding message unique to this call, so the inbox of the shared approver is
    unambiguous."""
    return lambda text: f"{text} #{uuid.uuid4().hex[:8]}"


def payment(amount: str, creditor: str = "ACME Ltd") -> list[dict[str, Any]]:
    return [
        {
            "type": "payment_initiation",
            "instructedAmount": {"currency": "EUR", "amount": amount},
            "creditorName": creditor,
        }
    ]
