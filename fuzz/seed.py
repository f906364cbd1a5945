#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora, fuzz/corpus/<target>/, from ../testvectors.

Each seed is the raw input one target consumes (entry bytes, a COSE key, clientDataJSON, a
statement, a bundle, a note, a tlog-proof text, a tile path, a form body), named by its SHA-1
like libFuzzer's own corpus files. Run by scripts/fuzz.sh before fuzzing; idempotent.
"""
import base64
import glob
import hashlib
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TV = os.path.join(HERE, "..", "testvectors")
OUT = os.path.join(HERE, "corpus")
seeds = {}


def add(target, data):
    if isinstance(data, str):
        data = data.encode()
    seeds.setdefault(target, set()).add(bytes(data))


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def walk(x):
    """Every (key, value) pair of a JSON document, at any depth."""
    if isinstance(x, dict):
        for k, v in x.items():
            yield k, v
            yield from walk(v)
    elif isinstance(x, list):
        for v in x:
            yield from walk(v)


def hexval(v):
    return bytes.fromhex(v["hex"] if isinstance(v, dict) else v)


def tlog_proof(logged, checkpoint, extra=None):
    lines = ["c2sp.org/tlog-proof@v1"]
    if extra is not None:
        lines.append("extra " + base64.b64encode(extra).decode())
    lines.append("index %d" % logged["index"])
    lines += [base64.b64encode(bytes.fromhex(h)).decode() for h in logged["inclusion_proof"]]
    return "\n".join(lines) + "\n\n" + checkpoint


for f in glob.glob(os.path.join(TV, "entries", "*.json")):
    add("entry", bytes.fromhex(load(f)["entry"]))
for f in glob.glob(os.path.join(TV, "inclusion", "*.json"))[:4]:
    add("entry", bytes.fromhex(load(f)["leaf"]))

for f in glob.glob(os.path.join(TV, "assertions", "*.json")):
    v = load(f)
    add("cose_key", bytes.fromhex(v["public_key"]))
    add("client_data", bytes.fromhex(v["client_data_json"]))

w3c = load(os.path.join(TV, "known-answer", "webauthn-l3-vectors.json"))
for v in w3c["vectors"]:
    reg, auth = v["registration"], v["authentication"]
    cdj, att = hexval(reg["clientDataJSON"]), hexval(reg["attestationObject"])
    add("attestation", len(cdj).to_bytes(2, "big") + cdj + att)
    add("client_data", cdj)
    add("client_data", hexval(auth["clientDataJSON"]))
    add("cose_key", bytes.fromhex(v["derived"]["credential_public_key_cose_hex"]))
for v in w3c["project_generated_vectors"]:
    add("cose_key", bytes.fromhex(v["credential_public_key_cose_hex"]))
    add("client_data", bytes.fromhex(v["clientDataJSON_hex"]))

for f in glob.glob(os.path.join(TV, "statements", "*.json")):
    v = load(f)
    if "statement_text" in v:
        add("statement", v["statement_text"])
    if "statement" in v:
        add("statement", json.dumps(v["statement"], ensure_ascii=False))
    if "canonical_json" in v:
        add("statement", v["canonical_json"])

for f in glob.glob(os.path.join(TV, "bundles", "*.json")):
    v = load(f)
    b = v.get("bundle")
    if not isinstance(b, dict):
        continue
    add("bundle", json.dumps(b, indent=2, ensure_ascii=False))
    if isinstance(b.get("statement"), dict):
        add("statement", json.dumps(b["statement"], ensure_ascii=False))
    for k in ("decision", "enrolment"):
        if isinstance(b.get(k), dict) and "entry" in b[k]:
            add("entry", bytes.fromhex(b[k]["entry"]))
    if isinstance(b.get("checkpoint"), str):
        add("note_checkpoint", b["checkpoint"])
        if isinstance(b.get("decision"), dict):
            add("tlog_proof", tlog_proof(b["decision"], b["checkpoint"]))
            add("tlog_proof", tlog_proof(b["decision"], b["checkpoint"], b"extra data"))

for f in glob.glob(os.path.join(TV, "checkpoints", "*.json")):
    v = load(f)
    add("note_checkpoint", v["note"])
for f in glob.glob(os.path.join(TV, "known-answer", "*.json")):
    for k, v in walk(load(f)):
        if isinstance(v, str):
            if "\n\n\u2014 " in v:
                add("note_checkpoint", v)
            if k in ("c2sp_path", "path") and v.startswith("tile/"):
                add("tile_path", v[len("tile/"):])
add("tile_path", "entries/x001/x234/067.p/8")
add("tile_path", "7/x018/x446/x744/x073/x709/551")

# CIBA: the first line is the HTTP Basic "id:secret" (before base64), empty for none.
for basic, body in [
    ("", "scope=openid+payments&login_hint=apv_7f3a9c&binding_message=Pay%20EUR%201%2C250.00"
         "&authorization_details=%5B%7B%22type%22%3A%22payment_initiation%22%7D%5D"
         "&requested_expiry=300&client_notification_token=tok&client_id=agent-payments"
         "&client_secret=s3cr%C3%A9t"),
    ("agent-payments:s3cr%3At+x", "scope=openid&login_hint_token=abc&binding_message=hi"),
    ("agent-payments:secret", "grant_type=urn%3Aopenid%3Aparams%3Agrant-type%3Aciba"
                              "&auth_req_id=8Ay0Zt1AEg3s"),
    ("", "grant_type=urn%3Aopenid%3Aparams%3Agrant-type%3Aciba&auth_req_id=x"
         "&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"
         "&client_assertion=eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJhIn0.c2ln"),
]:
    add("ciba_form", basic + "\n" + body)

# tlog-policy files; the witness's add-checkpoint bodies around checkpoints the log signed.
WITNESS_REQUEST_PROOF = ("PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\n"
                         "jrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=\n")
signed = []
for f in sorted(glob.glob(os.path.join(TV, "policies", "*.json"))):
    v = load(f)
    add("tlog_policy", v["policy"])
    if v.get("expected") == "valid" and isinstance(v.get("note"), str):
        signed.append(v["note"])
for f in sorted(glob.glob(os.path.join(TV, "bundles", "*.json"))):
    b = load(f).get("bundle")
    if isinstance(b, dict) and isinstance(b.get("checkpoint"), str):
        signed.append(b["checkpoint"])
signed = sorted(set(signed))
for note in signed:
    size = note.split("\n")[1]
    add("witness_request", "old 0\n\n" + note)
    add("witness_request", "old %s\n%s\n%s" % (size, WITNESS_REQUEST_PROOF, note))
    add("witness_add", "old 0\n\n" + note)
# Two checkpoints at one size (different roots): the second must be refused as a fork.
same = {}
for note in signed:
    same.setdefault(note.split("\n")[1], []).append(note)
for size, notes in sorted(same.items()):
    for a, b in zip(notes, notes[1:]):
        add("witness_add", b"\xff".join(
            ("old %s\n\n%s" % (old, note)).encode() for old, note in [(0, a), (size, b), (size, a)]))

# Approval policies: the policy JSON, 0xFF, then "client_id\n" and authorization_details.
for f in sorted(glob.glob(os.path.join(TV, "approval-policies", "*.json"))):
    v = load(f)
    text = json.dumps(v["policy"], ensure_ascii=False).encode()
    add("approval_policy", text)
    if "canonical_json" in v:
        add("approval_policy", v["canonical_json"])
    for r in v.get("requests", []):
        req = r["request"]
        add("approval_policy", text + b"\xff" + req["client_id"].encode() + b"\n"
            + json.dumps(req["authorization_details"], ensure_ascii=False).encode())
for d in ["1000\n1000.00\n-0", "0.1\n0.10000000000000000000000000000000000001\n-0.1",
          "-12.5\n-12.50\n-13", "007\n7.0\n6.999", "99999999999999999999.99999999999999999999\n1\n0",
          "-0.0\n0\n00.00"]:
    add("approval_decimal", d)

total = 0
for target, datas in sorted(seeds.items()):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    for data in datas:
        with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
            f.write(data)
        total += len(data)
    print("%-16s %4d seeds" % (target, len(datas)), file=sys.stderr)
print("%d bytes in all" % total, file=sys.stderr)
