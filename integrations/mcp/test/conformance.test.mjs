// The official MCP conformance suite (@modelcontextprotocol/conformance 0.1.12, server
// scenarios) against `countersign-mcp --http`. The scenarios run here are the ones that apply to
// a server with exactly these three tools; README.md lists the others and why they do not apply.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";

import { freePort } from "../../../interop/lib/server.mjs";

import { startHttp } from "./lib.mjs";

/** The scenarios that apply (see README.md, "Conformance"). */
export const APPLICABLE = [
  "server-initialize",
  "ping",
  "tools-list",
  "server-sse-multiple-streams",
  "dns-rebinding-protection",
];

const require = createRequire(import.meta.url);
const cli = path.join(path.dirname(require.resolve("@modelcontextprotocol/conformance/package.json")), "dist", "index.js");

function run(args, cwd) {
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, ...args], { cwd, timeout: 120_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (err.code ?? err.signal) : 0, out: `${stdout}${stderr}` });
    });
  });
}

describe("MCP conformance suite 0.1.12 against countersign-mcp --http", { timeout: 300_000 }, () => {
  let mcp;
  let dir;

  before(async () => {
    // The scenarios that apply list tools and never call them: no Countersign server is needed,
    // and the URL points at a closed local port.
    const port = await freePort();
    mcp = await startHttp({ url: `http://127.0.0.1:${port}`, clientId: "conformance", secret: "unused-secret" });
    dir = await mkdtemp(path.join(os.tmpdir(), "countersign-mcp-conformance-"));
  });

  after(async () => {
    await mcp?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test("the suite knows every scenario we run", async () => {
    const { out } = await run(["list"], dir);
    for (const s of APPLICABLE) assert.match(out, new RegExp(`^\\s*- ${s}$`, "m"), s);
  });

  for (const scenario of APPLICABLE) {
    test(`scenario ${scenario} passes`, async () => {
      const { code, out } = await run(["server", "--url", mcp.url, "--scenario", scenario], dir);
      assert.equal(code, 0, `${scenario} exited ${code}:\n${out.slice(-3000)}`);
      const m = out.match(/Passed:\s*(\d+)\/(\d+),\s*(\d+) failed/);
      assert.ok(m, `no result line for ${scenario}:\n${out.slice(-3000)}`);
      const [passed, total, failed] = m.slice(1).map(Number);
      assert.ok(total > 0 && passed === total && failed === 0, `${scenario}: ${m[0]}\n${out.slice(-3000)}`);
    });
  }
});
