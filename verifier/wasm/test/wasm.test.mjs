// The built WebAssembly verifier, through the page's loader: a real bundle verifies, and fails
// with one statement field changed. COUNTERSIGN_VERIFIER_WASM names the .wasm file
// (cargo build -p countersign-verifier-wasm --target wasm32-unknown-unknown --release).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";

import { load } from "../js/countersign-verifier.mjs";

const wasmPath = process.env.COUNTERSIGN_VERIFIER_WASM;
if (!wasmPath) {
  throw new Error(
    "COUNTERSIGN_VERIFIER_WASM is not set: build the module (cargo build -p countersign-verifier-wasm " +
      "--target wasm32-unknown-unknown --release) and point it at countersign_verifier_wasm.wasm",
  );
}
const vectors = new URL("../../../testvectors/", import.meta.url);
const vector = async (name) => JSON.parse(await readFile(new URL(`${name}.json`, vectors), "utf8"));

const bytes = await readFile(wasmPath);
const v = await load(bytes);

test("the module imports nothing and exports the ABI", () => {
  const m = new WebAssembly.Module(bytes);
  assert.deepEqual(WebAssembly.Module.imports(m), []);
  const names = WebAssembly.Module.exports(m).map((e) => e.name);
  for (const n of ["memory", "alloc", "dealloc", "call", "answer_len"]) assert.ok(names.includes(n), n);
});

test("load() takes bytes, an ArrayBuffer, a Response and a promise", async () => {
  const ab = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  const sources = [ab, new Response(bytes), Promise.resolve(new Uint8Array(bytes))];
  for (const s of sources) {
    const w = await load(s);
    assert.equal(w.decodeEntry({}).valid, null);
  }
  await assert.rejects(load(new Response("missing", { status: 404 })), /404/);
  await assert.rejects(load(42), TypeError);
});

// The generated vectors' relying party: a caller pins the RP it expects.
const RP = "approve.countersign.test";

test("the relying party must be pinned, or the bundle's trusted in so many words", async () => {
  const vec = await vector("bundles/valid-es256");
  const none = v.verifyBundle({ bundle: vec.bundle, log_key: vec.log_key });
  assert.equal(none.valid, null);
  assert.match(none.error, /rp_id/);
  const trusted = v.verifyBundle({ bundle: vec.bundle, log_key: vec.log_key, trust_bundle_rp: true });
  assert.equal(trusted.valid, true);
  assert.equal(trusted.rp_pinned, false);
  const wrong = await vector("bundles/wrong-rp-id");
  assert.equal(v.verifyBundle({ bundle: wrong.bundle, log_key: wrong.log_key, rp_id: RP }).valid, false);
});

test("a real bundle verifies, as text and as an object, and names its unsigned members", async () => {
  const vec = await vector("bundles/valid-es256");
  for (const bundle of [JSON.stringify(vec.bundle, null, 2), vec.bundle]) {
    const a = v.verifyBundle({ bundle, log_key: vec.log_key, rp_id: RP });
    assert.equal(a.valid, true, JSON.stringify(a));
    assert.equal(a.decision, "approve");
    assert.equal(a.as_expected, true);
    assert.deepEqual(a.statement, vec.bundle.statement);
    assert.deepEqual(a.unsigned, ["parties", "relying_party.origins"]);
    assert.deepEqual(a.parties, vec.bundle.parties);
    assert.equal(a.tree_size, 5);
  }
});

test("the same bundle with one statement field changed is refused", async () => {
  const vec = await vector("bundles/valid-es256");
  for (const [field, value] of [
    ["binding_message", "Pay EUR 1.00 to ACME GmbH"],
    ["expires_at", vec.bundle.statement.expires_at + 3600],
  ]) {
    const b = structuredClone(vec.bundle);
    b.statement[field] = value;
    const a = v.verifyBundle({ bundle: b, log_key: vec.log_key, rp_id: RP });
    assert.equal(a.valid, false, `${field}: ${JSON.stringify(a)}`);
    assert.equal(a.check, "bundle");
    assert.match(a.error, /does not hash to the statement hash/);
  }
  const b = structuredClone(vec.bundle);
  b.statement.authorization_details[0].instructedAmount.amount = "12500.00";
  assert.equal(v.verifyBundle({ bundle: b, log_key: vec.log_key, rp_id: RP }).valid, false);
});

test("a denial verifies as a denial, not as expected unless asked", async () => {
  const vec = await vector("bundles/valid-deny");
  const a = v.verifyBundle({ bundle: vec.bundle, log_key: vec.log_key, rp_id: RP });
  assert.equal(a.valid, true);
  assert.equal(a.decision, "deny");
  assert.equal(a.as_expected, false);
  assert.equal(v.verifyBundle({ bundle: vec.bundle, log_key: vec.log_key, rp_id: RP, expect: "deny" }).as_expected, true);
});

test("checkpoint, inclusion and entry ops", async () => {
  const cp = await vector("checkpoints/valid-cosigned");
  const c = v.verifyCheckpoint({ note: cp.note, log_key: cp.keys[0] });
  assert.equal(c.valid, true, JSON.stringify(c));
  assert.equal(c.size, 70);
  assert.deepEqual(c.signatures.map((s) => [s.role, s.verified]), [["log", true], ["unknown key", false]]);
  assert.equal(v.verifyCheckpoint({ note: cp.note.replace("\n70\n", "\n71\n"), log_key: cp.keys[0] }).valid, false);

  const inc = await vector("inclusion/valid-5-of-8");
  const req = { leaf_hash: inc.leaf_hash, index: Number(inc.index), size: Number(inc.tree_size), root: inc.root, proof: inc.proof };
  assert.equal(v.verifyInclusion(req).valid, true);
  const entry = Buffer.from(inc.leaf, "hex").toString("base64");
  assert.equal(v.verifyInclusion({ ...req, leaf_hash: undefined, entry }).leaf_hash, inc.leaf_hash);
  const wrong = v.verifyInclusion({ ...req, index: 4 });
  assert.equal(wrong.valid, false);
  assert.equal(wrong.check, "inclusion");

  const e = await vector("entries/valid-decision");
  const d = v.decodeEntry({ entry: Buffer.from(e.entry, "hex").toString("base64") });
  assert.equal(d.valid, true);
  assert.equal(d.kind, "decision");
  assert.equal(d.leaf_hash, e.leaf_hash);
});

test("bad requests are answered, never thrown", () => {
  assert.match(v.call({ op: "frobnicate" }).error, /unknown op/);
  assert.equal(v.verifyBundle({ bundle: "{", log_key: "x" }).valid, null);
  const big = v.decodeEntry({ entry: "A".repeat(5 * 1024 * 1024) });
  assert.equal(big.valid, null);
  assert.match(big.error, /larger than 4194304 bytes/);
  // The module still answers after a refusal.
  assert.equal(v.decodeEntry({ entry: "AQ==" }).valid, false);
});

// The loader file itself: no eval or Function constructor (CSP script-src without 'unsafe-eval').
test("the loader uses no eval", async () => {
  const src = await readFile(fileURLToPath(new URL("../js/countersign-verifier.mjs", import.meta.url)), "utf8");
  assert.doesNotMatch(src, /\beval\(|new Function|instantiateStreaming\(/);
});
