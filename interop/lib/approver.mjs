// An approver driving the approval endpoints the pages use (/v1/enrol/*, /v1/session/*,
// /v1/inbox, /v1/requests/<id>/decide/*) with a software passkey, as the pages' app.js does.

import assert from "node:assert/strict";
import { b64u, hex, jcs, sha256, SoftPasskey } from "./passkey.mjs";

export class ApiApprover {
  /** `server` is a Server; the passkey's origin is the server's public URL. */
  constructor(server, passkey) {
    this.server = server;
    this.passkey = passkey;
    this.cookie = "";
    this.csrf = "";
  }

  static async create(server, rpId = "localhost", origin = undefined) {
    // A WebAuthn RP ID cannot be an IP address: the pages run on http://localhost:PORT, an
    // origin the server allows by default.
    const o = origin ?? `http://localhost:${server.port}`;
    return new ApiApprover(server, await SoftPasskey.create(rpId, o));
  }

  async post(pathname, body, { withSession = true } = {}) {
    const headers = { "content-type": "application/json" };
    if (withSession && this.cookie) headers.cookie = this.cookie;
    if (withSession && this.csrf) headers["x-csrf-token"] = this.csrf;
    const r = await fetch(`${this.server.url}${pathname}`, {
      method: "POST",
      headers,
      body: JSON.stringify(body ?? {}),
      signal: AbortSignal.timeout(10_000),
    });
    const text = await r.text();
    return { status: r.status, body: text ? JSON.parse(text) : null, headers: r.headers };
  }

  async get(pathname) {
    const r = await fetch(`${this.server.url}${pathname}`, {
      headers: this.cookie ? { cookie: this.cookie } : {},
      signal: AbortSignal.timeout(10_000),
    });
    const text = await r.text();
    return { status: r.status, body: text ? JSON.parse(text) : null };
  }

  /** Enrols the passkey through the one-time enrolment link; returns the server's answer. */
  async enrol(link) {
    const token = new URL(link).pathname.split("/").pop();
    const start = await this.post("/v1/enrol/start", { token }, { withSession: false });
    assert.equal(start.status, 200, `enrol/start: ${JSON.stringify(start.body)}`);
    const credential = await this.passkey.register(start.body.publicKey);
    const fin = await this.post(
      "/v1/enrol/finish",
      { ceremony_id: start.body.ceremony_id, token, credential },
      { withSession: false },
    );
    assert.equal(fin.status, 201, `enrol/finish: ${JSON.stringify(fin.body)}`);
    return fin.body;
  }

  /** Signs in with the passkey; keeps the session cookie and CSRF token. */
  async signIn() {
    const start = await this.post("/v1/session/start", {}, { withSession: false });
    assert.equal(start.status, 200, `session/start: ${JSON.stringify(start.body)}`);
    const credential = await this.passkey.assert(b64u.dec(start.body.publicKey.challenge));
    const fin = await this.post(
      "/v1/session/finish",
      { ceremony_id: start.body.ceremony_id, credential },
      { withSession: false },
    );
    assert.equal(fin.status, 200, `session/finish: ${JSON.stringify(fin.body)}`);
    const setCookie = fin.headers.get("set-cookie") ?? "";
    assert.match(setCookie, /HttpOnly/i);
    assert.match(setCookie, /SameSite=Strict/i);
    this.cookie = setCookie.split(";")[0];
    this.csrf = fin.body.csrf_token;
    return fin.body;
  }

  async inbox() {
    const r = await this.get("/v1/inbox");
    assert.equal(r.status, 200, `inbox: ${JSON.stringify(r.body)}`);
    return r.body.requests;
  }

  /** Waits until a request with `bindingMessage` is in the inbox; returns it. */
  async waitForRequest(bindingMessage, timeoutMs = 10_000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = (await this.inbox()).find((q) => q.binding_message === bindingMessage);
      if (found) return found;
      if (Date.now() > deadline) throw new Error(`no request "${bindingMessage}" in the inbox after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /**
   * Starts a decision, checks independently (JCS + SHA-256 here) that the challenge is
   * nonce || SHA-256(statement with this decision), signs it and finishes.
   * Returns { start, finish } with both answers.
   */
  async decide(requestId, decision, { bogusSignature = false } = {}) {
    const id = encodeURIComponent(requestId);
    const start = await this.post(`/v1/requests/${id}/decide/start`, { decision });
    assert.equal(start.status, 200, `decide/start: ${JSON.stringify(start.body)}`);
    const st = start.body.statement;
    assert.equal(st.decision, decision);
    assert.equal(st.request_id, requestId);
    const canonical = jcs(st);
    assert.equal(canonical, start.body.statement_canonical, "our JCS of the statement equals the server's");
    const hash = hex(await sha256(canonical));
    assert.equal(hash, start.body.statement_hash, "statement hash recomputed in JS");
    const challenge = b64u.dec(start.body.publicKey.challenge);
    assert.equal(hex(challenge), start.body.nonce + hash, "challenge = nonce || SHA-256(statement)");
    assert.equal(start.body.nonce.length, 64, "32-byte nonce");
    const credential = await this.passkey.assert(challenge, { bogusSignature });
    const finish = await this.post(`/v1/requests/${id}/decide/finish`, { decision, credential });
    return { start: start.body, finish, statementHash: hash };
  }
}
