// Times whole evidence bundles verified by the WebAssembly verifier (verifier/wasm) in Node,
// through the same loader and JSON interface the /verify page uses.
//   cargo build --release -p countersign-verifier-wasm --target wasm32-unknown-unknown
//   node benches/wasm-bundle.mjs [path/to/countersign_verifier_wasm.wasm]
import { readFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";

import { load } from "../verifier/wasm/js/countersign-verifier.mjs";

const target = process.env.CARGO_TARGET_DIR || path.join(os.homedir(), ".cache", "countersign", "target");
const wasm = process.argv[2] || path.join(target, "wasm32-unknown-unknown", "release", "countersign_verifier_wasm.wasm");
const vectors = new URL("../testvectors/bundles/", import.meta.url);
const ROUNDS = 300;
const WARM_UP = 20;

const bytes = await readFile(wasm);
let t0 = performance.now();
const v = await load(bytes);
console.log(`instantiate: ${(performance.now() - t0).toFixed(1)} ms, ${bytes.length} bytes`);
for (const alg of ["es256", "eddsa", "rs256"]) {
  const vec = JSON.parse(await readFile(new URL(`valid-${alg}.json`, vectors), "utf8"));
  const bundle = JSON.stringify(vec.bundle);
  const once = () => {
    const a = v.verifyBundle({ bundle, log_key: vec.log_key, rp_id: "approve.countersign.test" });
    if (a.valid !== true) throw new Error(`valid-${alg} did not verify: ${JSON.stringify(a)}`);
  };
  for (let i = 0; i < WARM_UP; i++) once();
  t0 = performance.now();
  for (let i = 0; i < ROUNDS; i++) once();
  console.log(`${alg}: ${((performance.now() - t0) / ROUNDS).toFixed(3)} ms per bundle (parse + verify, Node ${process.version})`);
}
