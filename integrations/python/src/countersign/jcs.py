"""RFC 8785 JSON Canonicalization Scheme (JCS) for the JSON data model Python's ``json`` yields.

Written here rather than taken from PyPI: the subset is small (objects, arrays, strings, finite
numbers, booleans, null), the few maintained packages add nothing over it, and the agent-side
execution check should not depend on a package that could drift from the server's canonicaliser
(``serde_json_canonicalizer``). The statement spec (spec/statement.md S7) states the same rules.
"""

from __future__ import annotations

import math
from decimal import Decimal
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["canonicalize", "CanonicalizationError"]

# I-JSON (RFC 7493 section 2.2): integers beyond this change value once read as IEEE doubles, so
# the server refuses them in authorization_details; so do we, rather than hash a rounded value.
MAX_SAFE_INTEGER = 2**53 - 1

_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


class CanonicalizationError(ValueError):
    """The value has no RFC 8785 form: a non-finite or unsafe number, a lone surrogate, a key
    that is not a string, or a type JSON does not have."""


def canonicalize(value: Any) -> bytes:
    """The RFC 8785 canonical form of ``value`` as UTF-8 bytes.

    Raises :class:`CanonicalizationError` for values JSON cannot carry exactly.
    """
    out: list[str] = []
    _write(value, out)
    text = "".join(out)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as e:
        # A lone surrogate is not a Unicode scalar value; RFC 8785 section 3.2.2.2 rejects it.
        raise CanonicalizationError("a string holds a lone surrogate") from e


def _write(v: Any, out: list[str]) -> None:
    if v is None:
        out.append("null")
    elif v is True:
        out.append("true")
    elif v is False:
        out.append("false")
    elif isinstance(v, str):
        out.append(_string(v))
    elif isinstance(v, int):
        if abs(v) > MAX_SAFE_INTEGER:
            raise CanonicalizationError(f"integer {v} is beyond 2^53 - 1")
        out.append(str(v))
    elif isinstance(v, float):
        out.append(_number(v))
    elif isinstance(v, Mapping):
        for k in v:
            if not isinstance(k, str):
                raise CanonicalizationError(f"object key {k!r} is not a string")
        # Section 3.2.3: member names compared as arrays of UTF-16 code units.
        keys = sorted(v, key=lambda k: k.encode("utf-16-be", "surrogatepass"))
        out.append("{")
        for i, k in enumerate(keys):
            if i:
                out.append(",")
            out.append(_string(k))
            out.append(":")
            _write(v[k], out)
        out.append("}")
    elif isinstance(v, Sequence) and not isinstance(v, (bytes, bytearray)):
        out.append("[")
        for i, item in enumerate(v):
            if i:
                out.append(",")
            _write(item, out)
        out.append("]")
    else:
        raise CanonicalizationError(f"{type(v).__name__} is not a JSON value")


def _string(s: str) -> str:
    parts = ['"']
    for ch in s:
        esc = _ESCAPES.get(ch)
        if esc is not None:
            parts.append(esc)
        elif ch < " ":
            parts.append(f"\\u{ord(ch):04x}")
        else:
            parts.append(ch)
    parts.append('"')
    return "".join(parts)


def _number(x: float) -> str:
    """ECMAScript ``Number.prototype.toString`` of a double (RFC 8785 section 3.2.2.3)."""
    if not math.isfinite(x):
        raise CanonicalizationError(f"number {x} is not finite")
    if x == 0:
        return "0"  # -0 too
    sign = "-" if x < 0 else ""
    # repr gives the shortest digits that round-trip, as ECMAScript requires; only the layout
    # (where the point goes, when an exponent is used) differs.
    t = Decimal(repr(abs(x))).normalize().as_tuple()
    digits = "".join(map(str, t.digits))
    if not isinstance(t.exponent, int):  # only for NaN and infinities, refused above
        raise CanonicalizationError(f"number {x} is not finite")
    # value = 0.digits * 10^n
    n = len(digits) + t.exponent
    k = len(digits)
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * (-n) + digits
    e = n - 1
    e_text = f"+{e}" if e >= 0 else str(e)
    if k == 1:
        return f"{sign}{digits}e{e_text}"
    return f"{sign}{digits[0]}.{digits[1:]}e{e_text}"
