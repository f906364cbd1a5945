// Shared by the countersign-mcp tests (kept out of *.test.mjs so that `node --test` does not run
// it): where the binary is, starting it over stdio or streamable HTTP and connecting the
// official MCP TypeScript client to it, and a proxy in front of the Countersign server that can
// alter its token answers.

import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

/** The MCP server binary: COUNTERSIGN_MCP_BIN, or $CARGO_TARGET_DIR/debug/countersign-mcp. */
export function mcpBinary() {
  if (process.env.COUNTERSIGN_MCP_BIN) return process.env.COUNTERSIGN_MCP_BIN;
  const target =
    process.env.CARGO_TARGET_DIR || path.join(os.homedir(), ".cache", "countersign", "target");
  const p = path.join(target, "debug", "countersign-mcp");
  if (!existsSync(p)) throw new Error(`countersign-mcp not found at ${p}; run cargo build -p countersign-mcp or set COUNTERSIGN_MCP_BIN`);
  return p;
}

/** The environment for the binary: no COUNTERSIGN_* of the developer's, plus `extra`. */
function mcpEnv(extra) {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith("COUNTERSIGN_")) env[k] = v;
  }
  env.RUST_LOG = process.env.COUNTERSIGN_MCP_LOG || "info";
  return { ...env, ...extra };
}

/**
 * Starts countersign-mcp over stdio (the client spawns it) and connects a client.
 * `secret` goes in COUNTERSIGN_CLIENT_SECRET. Returns { client, stderr(), close() }.
 */
export async function connectStdio({ url, clientId, secret, args = [], capabilities, setup }) {
  const transport = new StdioClientTransport({
    command: mcpBinary(),
    args: ["--url", url, "--client-id", clientId, ...args],
    env: mcpEnv({ COUNTERSIGN_CLIENT_SECRET: secret }),
    stderr: "pipe",
  });
  let stderr = "";
  transport.stderr?.on("data", (d) => {
    stderr += d;
    if (process.env.COUNTERSIGN_TEST_VERBOSE) process.stderr.write(d);
  });
  const client = new Client({ name: "countersign-mcp-test", version: "0.0.0" }, capabilities ? { capabilities } : undefined);
  setup?.(client);
  await client.connect(transport);
  return { client, stderr: () => stderr, close: () => client.close() };
}

/**
 * Starts `countersign-mcp --http 127.0.0.1:0` and reads the bound address from its standard
 * error. Returns { url (of /mcp), child, stderr(), stop() }.
 */
export async function startHttp({ url, clientId, secret, secretFile, args = [] }) {
  const extra = secretFile ? ["--client-secret-file", secretFile] : [];
  const child = spawn(
    mcpBinary(),
    ["--url", url, "--client-id", clientId, "--http", "127.0.0.1:0", ...extra, ...args],
    { stdio: ["ignore", "pipe", "pipe"], env: mcpEnv(secret ? { COUNTERSIGN_CLIENT_SECRET: secret } : {}) },
  );
  let stderr = "";
  let stdout = "";
  child.stdout.on("data", (d) => (stdout += d));
  const exited = new Promise((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
  const mcpUrl = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`countersign-mcp did not start:\n${stderr}`)), 15_000);
    child.stderr.on("data", (d) => {
      stderr += d;
      if (process.env.COUNTERSIGN_TEST_VERBOSE) process.stderr.write(d);
      const m = stderr.match(/listening on (http:\/\/127\.0\.0\.1:\d+\/mcp)/);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    exited.then((x) => {
      clearTimeout(timer);
      reject(new Error(`countersign-mcp exited (${JSON.stringify(x)}):\n${stderr}`));
    });
  });
  return {
    url: mcpUrl,
    child,
    stderr: () => stderr,
    stdout: () => stdout,
    exited,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        const t = setTimeout(() => child.kill("SIGKILL"), 5000);
        await exited;
        clearTimeout(t);
      }
    },
  };
}

/** Connects a client to a running HTTP server at `mcpUrl`. */
export async function connectHttp(mcpUrl) {
  const client = new Client({ name: "countersign-mcp-test", version: "0.0.0" });
  await client.connect(new StreamableHTTPClientTransport(new URL(mcpUrl)));
  return client;
}

/**
 * A reverse proxy on 127.0.0.1 in front of `target` (http://127.0.0.1:PORT). `alterToken(body)`
 * may rewrite the JSON of a 200 answer of POST /token (an attacker or a bug between the agent
 * and the server); `intercept(n)`, called for the n-th POST /token (from 1), may answer it
 * itself with { status, body } instead of forwarding it. Returns { url, polls (the times of the
 * POST /token requests, ms), close() }.
 */
export async function startProxy(target, alterToken = (b) => b, intercept = () => null) {
  const polls = [];
  const srv = http.createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    if (req.url === "/token") {
      polls.push(performance.now());
      const own = intercept(polls.length);
      if (own) {
        res.writeHead(own.status, { "content-type": "application/json" });
        res.end(JSON.stringify(own.body));
        return;
      }
    }
    const body = Buffer.concat(chunks);
    const headers = { ...req.headers };
    delete headers.host;
    delete headers["content-length"];
    try {
      const r = await fetch(`${target}${req.url}`, {
        method: req.method,
        headers,
        body: ["GET", "HEAD"].includes(req.method) ? undefined : body,
        signal: AbortSignal.timeout(10_000),
      });
      let text = await r.text();
      if (req.url === "/token" && r.status === 200) text = JSON.stringify(alterToken(JSON.parse(text)));
      res.writeHead(r.status, { "content-type": r.headers.get("content-type") ?? "application/json" });
      res.end(text);
    } catch (e) {
      res.writeHead(502);
      res.end(String(e));
    }
  });
  await new Promise((resolve) => srv.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${srv.address().port}`,
    polls,
    close: () => new Promise((resolve) => srv.close(resolve)),
  };
}

/** The text of a tool result's content. */
export function textOf(result) {
  return (result.content ?? []).filter((c) => c.type === "text").map((c) => c.text).join("\n");
}
