"""The canonicaliser against the project's statement vectors and the spec's JCS example."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from countersign import CanonicalizationError, canonicalize

VECTORS = Path(__file__).resolve().parents[3] / "testvectors" / "statements"


@pytest.mark.parametrize("name", ["valid-approve.json", "valid-deny.json"])
def test_statement_vectors(name: str) -> None:
    v = json.loads((VECTORS / name).read_text())
    out = canonicalize(v["statement"])
    assert out.decode() == v["canonical_json"]
    assert hashlib.sha256(out).hexdigest() == v["sha256"]


def test_spec_example() -> None:
    # spec/statement.md, "JCS behaviour, shown by the code".
    value = json.loads(
        '{"A":true,"a\\u00e9":"\\u20ac\\n\\"","b":[1e+21,0.1,-0.0,1e-7,100.0,9007199254740991],'
        '"\\ufb33":"hebrew","\\ud83d\\ude00":"emoji"}'
    )
    assert canonicalize(value).decode() == (
        '{"A":true,"a\u00e9":"\u20ac\\n\\"","b":[1e+21,0.1,0,1e-7,100,9007199254740991],'
        '"\U0001f600":"emoji","\ufb33":"hebrew"}'
    )


@pytest.mark.parametrize(
    ("number", "text"),
    [(1e21, "1e+21"), (1e20, "100000000000000000000"), (1e-6, "0.000001"), (1.5e-7, "1.5e-7"),
     (-3e-5, "-0.00003"), (12.34, "12.34"), (5e-324, "5e-324"), (1.7976931348623157e308, "1.7976931348623157e+308"),
     (123456789012.5, "123456789012.5"), (4.0, "4")],
)  # fmt: skip
def test_numbers_as_ecmascript_writes_them(number: float, text: str) -> None:
    assert canonicalize(number).decode() == text


def test_escapes() -> None:
    assert canonicalize("\u0001\u001f\t\u2028/\u007f").decode() == '"\\u0001\\u001f\\t\u2028/\u007f"'


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 2**53, {1: "x"}, b"bytes", "\ud800", {1.5}])
def test_refuses_what_json_cannot_carry_exactly(bad: object) -> None:
    with pytest.raises(CanonicalizationError):
        canonicalize(bad)
