// The Countersign verifier in WebAssembly, for browsers and Node 20 (verifier/wasm/README.md).
// No eval and no streaming compilation: the bytes are compiled with WebAssembly.instantiate, which
// a page with the CSP `script-src 'self' 'wasm-unsafe-eval'` allows, whatever MIME type served
// them. The module imports nothing.

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** The module's bytes from an ArrayBuffer, a typed array, a Response, a URL, or a promise of one. */
async function bytesOf(source) {
  const s = await source;
  if (s instanceof ArrayBuffer || ArrayBuffer.isView(s)) return s;
  if (typeof Response !== "undefined" && s instanceof Response) {
    if (!s.ok) throw new Error(`countersign verifier: fetching the module answered ${s.status}`);
    return s.arrayBuffer();
  }
  if (typeof s === "string" || s instanceof URL) return bytesOf(fetch(s));
  throw new TypeError("countersign verifier: load() takes bytes, a Response, a URL, or a promise of one");
}

/**
 * Instantiates the verifier and returns its operations. Each takes a plain object (the request
 * without `op`) and returns the answer object: `{valid: true, ...}`, `{valid: false, check,
 * error}`, or `{valid: null, error}` for a request it cannot answer.
 */
export async function load(source) {
  const { instance } = await WebAssembly.instantiate(await bytesOf(source), {});
  const { memory, alloc, dealloc, call: callRaw, answer_len: answerLen } = instance.exports;

  /** Sends one request object; returns the answer object. */
  function call(request) {
    const input = encoder.encode(JSON.stringify(request));
    // alloc answers 0 for a request over the module's limit; call then says so without reading.
    const ptr = alloc(input.length);
    if (ptr !== 0) new Uint8Array(memory.buffer, ptr, input.length).set(input);
    let out = 0;
    let len = 0;
    try {
      out = callRaw(ptr, input.length);
      len = answerLen();
      // A fresh view: the call may have grown the memory, which detaches older views.
      return JSON.parse(decoder.decode(new Uint8Array(memory.buffer, out, len)));
    } finally {
      if (out !== 0) dealloc(out, len);
      if (ptr !== 0) dealloc(ptr, input.length);
    }
  }

  const op = (name) => (args = {}) => call({ ...args, op: name });
  return {
    verifyBundle: op("verify_bundle"),
    verifyCheckpoint: op("verify_checkpoint"),
    verifyInclusion: op("verify_inclusion"),
    decodeEntry: op("decode_entry"),
    call,
  };
}
