// Starts the real `countersign` binary on 127.0.0.1 with a fresh data directory, runs its admin
// CLI, and stops it again. Shared by the interop tests (kept out of test/ so that `node --test`
// does not run it as a test file).

import { spawn, execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
/** The repository root (interop/..). */
export const REPO_ROOT = path.resolve(here, "..", "..");

/** Where screenshots and other artifacts go (gitignored). */
export const ARTIFACTS_DIR =
  process.env.COUNTERSIGN_ARTIFACTS_DIR || path.join(REPO_ROOT, "test-artifacts");

/** The server binary: COUNTERSIGN_BIN, or $CARGO_TARGET_DIR/debug/countersign. */
export function serverBinary() {
  if (process.env.COUNTERSIGN_BIN) return process.env.COUNTERSIGN_BIN;
  const target =
    process.env.CARGO_TARGET_DIR || path.join(os.homedir(), ".cache", "countersign", "target");
  return path.join(target, "debug", "countersign");
}

/**
 * The offline verifier: COUNTERSIGN_VERIFY_BIN, or $CARGO_TARGET_DIR/debug/countersign-verify
 * (built by `cargo build --workspace`); null when absent.
 */
export function verifierBinary() {
  if (process.env.COUNTERSIGN_VERIFY_BIN) return process.env.COUNTERSIGN_VERIFY_BIN;
  const p = path.join(path.dirname(serverBinary()), "countersign-verify");
  return existsSync(p) ? p : null;
}

/** Runs `bin args`; resolves with { code, stdout, stderr } whatever the exit code. */
export function runTool(bin, args, { timeoutMs = 30_000 } = {}) {
  return new Promise((resolve) => {
    execFile(bin, args, { timeout: timeoutMs }, (err, stdout, stderr) => {
      resolve({ code: err ? (err.code ?? err.signal) : 0, stdout, stderr });
    });
  });
}

/** A free TCP port on 127.0.0.1 (bound, read and released). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Servers still running when the test process exits (a crash, a timeout) are killed with it.
const running = new Set();
process.once("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

/** Runs the binary with `args`; resolves with stdout, rejects with stderr on failure. */
export function runCli(args, { timeoutMs = 30_000 } = {}) {
  const bin = serverBinary();
  return new Promise((resolve, reject) => {
    execFile(bin, args, { timeout: timeoutMs, env: cliEnv() }, (err, stdout, stderr) => {
      if (err) {
        reject(new Error(`countersign ${args.join(" ")} failed (${err.code ?? err.signal}):\n${stderr}${stdout}`));
      } else {
        resolve(stdout);
      }
    });
  });
}

function cliEnv() {
  // The CLI reads its defaults from COUNTERSIGN_* variables; the tests pass everything as flags
  // so a developer's own environment cannot point them at another server.
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith("COUNTERSIGN_")) env[k] = v;
  }
  env.RUST_LOG = process.env.COUNTERSIGN_TEST_LOG || "info";
  return env;
}

/**
 * A running server.
 *
 * `url` is how the tests reach it (always http://127.0.0.1:PORT); `publicUrl` is its issuer and
 * page origin (127.0.0.1 by default, http://localhost:PORT when `host: "localhost"`, since a
 * WebAuthn RP ID cannot be an IP address and the browser must run the pages on localhost).
 */
export class Server {
  static async start({ host = "127.0.0.1", extraArgs = [], startTimeoutMs = 30_000 } = {}) {
    const bin = serverBinary();
    if (!existsSync(bin)) {
      throw new Error(
        `server binary not found at ${bin}; build it with ` +
          "`cargo build -p countersign --bin countersign` (CARGO_TARGET_DIR=$HOME/.cache/countersign/target) " +
          "or set COUNTERSIGN_BIN",
      );
    }
    const dir = await mkdtemp(path.join(os.tmpdir(), "countersign-interop-"));
    const dataDir = path.join(dir, "data");
    // The port is picked here and handed to --listen: the allowed WebAuthn origins and the issuer
    // are derived from it, so it cannot be 0. A lost race for the port is retried.
    let lastErr;
    for (let attempt = 0; attempt < 3; attempt++) {
      const port = await freePort();
      const publicUrl = `http://${host}:${port}`;
      const args = [
        "serve",
        "--data-dir", dataDir,
        "--listen", `127.0.0.1:${port}`,
        "--public-url", publicUrl,
        "--poll-interval", "1",
        "--checkpoint-interval-ms", "1000",
        ...extraArgs,
      ];
      const s = new Server(bin, args, dir, dataDir, port, publicUrl);
      try {
        await s.waitReady(startTimeoutMs);
        return s;
      } catch (e) {
        lastErr = e;
        await s.stop({ keepDir: true });
        if (!/Address already in use|binding/i.test(s.stderr)) break;
      }
    }
    await rm(dir, { recursive: true, force: true });
    throw lastErr;
  }

  constructor(bin, args, dir, dataDir, port, publicUrl) {
    this.dir = dir;
    this.dataDir = dataDir;
    this.port = port;
    this.url = `http://127.0.0.1:${port}`;
    this.publicUrl = publicUrl;
    this.stdout = "";
    this.stderr = "";
    this.child = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"], env: cliEnv() });
    running.add(this.child);
    this.child.on("exit", () => running.delete(this.child));
    this.exited = new Promise((resolve) => {
      this.child.on("exit", (code, signal) => resolve({ code, signal }));
      this.child.on("error", (err) => resolve({ code: null, signal: null, err }));
    });
    this.child.stdout.on("data", (d) => (this.stdout += d));
    this.child.stderr.on("data", (d) => {
      this.stderr += d;
      if (process.env.COUNTERSIGN_TEST_VERBOSE) process.stderr.write(d);
    });
    this.exitInfo = null;
    this.exited.then((x) => (this.exitInfo = x));
  }

  async waitReady(timeoutMs) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.exitInfo) {
        throw new Error(`server exited before it was ready (${JSON.stringify(this.exitInfo)}):\n${this.stderr.slice(-4000)}`);
      }
      try {
        const r = await fetch(`${this.url}/.well-known/openid-configuration`, {
          signal: AbortSignal.timeout(2000),
        });
        if (r.ok) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) {
        throw new Error(`server not ready after ${timeoutMs} ms:\n${this.stderr.slice(-4000)}`);
      }
      await sleep(100);
    }
  }

  /** Stops the server (SIGTERM, then SIGKILL after 5 s) and removes its temp dir. */
  async stop({ keepDir = false } = {}) {
    if (!this.exitInfo && this.child.exitCode === null) {
      this.child.kill("SIGTERM");
      const t = setTimeout(() => this.child.kill("SIGKILL"), 5000);
      await this.exited;
      clearTimeout(t);
    }
    if (!keepDir) await rm(this.dir, { recursive: true, force: true });
  }

  /** The log's verifier key (DATA_DIR/log.vkey; the start-up banner prints it labelled). */
  async vkey() {
    return (await readFile(path.join(this.dataDir, "log.vkey"), "utf8")).trim();
  }

  target() {
    return ["--url", this.url, "--data-dir", this.dataDir];
  }

  /** `countersign client add <id> --secret <secret> ...` through the admin CLI. */
  async addClient(id, secret, extra = []) {
    return runCli(["client", "add", id, "--secret", secret, ...extra, ...this.target()]);
  }

  /** `countersign approver add <id> --email <email> --name <name>`; returns the enrolment link. */
  async addApprover(id, email, name) {
    const args = ["approver", "add", id, "--email", email, ...(name ? ["--name", name] : []), ...this.target()];
    const out = await runCli(args);
    const m = out.match(/^(https?:\/\/\S+\/enrol\/\S+)\s*$/m);
    if (!m) throw new Error(`no enrolment link in the output of countersign approver add:\n${out}`);
    return m[1];
  }

  /** The current checkpoint: { origin, size, rootHash, text }. */
  async checkpoint() {
    const r = await fetch(`${this.url}/checkpoint`, { signal: AbortSignal.timeout(5000) });
    if (!r.ok) throw new Error(`GET /checkpoint answered ${r.status}`);
    const text = await r.text();
    const lines = text.split("\n");
    const size = Number(lines[1]);
    if (!/^\d+$/.test(lines[1] ?? "")) throw new Error(`checkpoint has no tree size on its second line:\n${text}`);
    return { origin: lines[0], size, rootHash: lines[2], text };
  }

  /** A form POST with HTTP Basic client authentication; answers { status, body }. */
  async clientPost(pathname, clientId, secret, params) {
    const r = await fetch(`${this.url}${pathname}`, {
      method: "POST",
      headers: {
        authorization:
          "Basic " +
          Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(secret)}`).toString("base64"),
        "content-type": "application/x-www-form-urlencoded",
      },
      body: new URLSearchParams(params).toString(),
      signal: AbortSignal.timeout(10_000),
    });
    const text = await r.text();
    let body;
    try {
      body = JSON.parse(text);
    } catch {
      body = text;
    }
    return { status: r.status, body };
  }
}
