"""Runs examples/pay_with_approval.py as a user would, against the live server."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

from conftest import APPROVER_ID, CLIENT_ID, CLIENT_SECRET

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "pay_with_approval.py"


def run(server, amount: str, creditor: str) -> subprocess.Popen[str]:
    env = {**os.environ, "COUNTERSIGN_URL": server.url, "COUNTERSIGN_CLIENT_ID": CLIENT_ID,
           "COUNTERSIGN_CLIENT_SECRET": CLIENT_SECRET, "COUNTERSIGN_APPROVER": APPROVER_ID}  # fmt: skip
    return subprocess.Popen([sys.executable, str(EXAMPLE), amount, creditor], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_example_pays_after_approval_and_not_after_denial(server, decide) -> None:
    creditor = f"ACME {uuid.uuid4().hex[:6]}"
    proc = run(server, "42.00", creditor)
    decide(f"Pay 42.00 EUR to {creditor}", "approve").result(timeout=30)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert f"paid 42.00 EUR to {creditor}" in out

    proc = run(server, "43.00", creditor)
    decide(f"Pay 43.00 EUR to {creditor}", "deny").result(timeout=30)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert "not run: AccessDenied" in out and "paid" not in out
