/**
 * JSON Canonicalization Scheme (RFC 8785): one byte string per JSON value, so "the approved
 * action" and "the action about to run" compare as strings.
 *
 * RFC 8785 section 3.2.2 serialises numbers and strings exactly as ECMAScript's
 * `JSON.stringify` does, and section 3.2.3 sorts object members by their names' UTF-16 code
 * units, which is the default order of `Array.prototype.sort` on strings.
 */

/** A JSON value. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/**
 * The canonical JSON text of `value`. Throws a `TypeError` for what JSON cannot hold
 * (`undefined`, functions, symbols, bigints, non-finite numbers, cycles) instead of silently
 * dropping it, since a dropped member would compare equal to a missing one.
 */
export function canonicalJson(value: unknown): string {
  return serialise(value, new Set());
}

function serialise(v: unknown, seen: Set<object>): string {
  if (v === null) return "null";
  switch (typeof v) {
    case "boolean":
      return v ? "true" : "false";
    case "number":
      if (!Number.isFinite(v)) throw new TypeError("JCS: a number must be finite (RFC 8785 section 3.2.2.3)");
      return JSON.stringify(v);
    case "string":
      return JSON.stringify(v);
    case "object":
      break;
    default:
      throw new TypeError(`JCS: a ${typeof v} is not JSON`);
  }
  const o = v as object;
  if (seen.has(o)) throw new TypeError("JCS: a cyclic value is not JSON");
  seen.add(o);
  let out: string;
  if (Array.isArray(o)) {
    out = `[${o.map((x) => serialise(x, seen)).join(",")}]`;
  } else {
    const proto = Object.getPrototypeOf(o);
    if (proto !== Object.prototype && proto !== null) {
      throw new TypeError("JCS: only plain objects are JSON objects");
    }
    const rec = o as Record<string, unknown>;
    const keys = Object.keys(rec).sort();
    out = `{${keys.map((k) => `${JSON.stringify(k)}:${serialise(rec[k], seen)}`).join(",")}}`;
  }
  seen.delete(o);
  return out;
}
