/**
 * A Countersign client for agents: OpenID CIBA Core 1.0 (discovery, the backchannel
 * authentication endpoint, the token endpoint in poll and ping mode, and push delivery) with
 * `client_secret_basic` authentication, plus the agent-side execution check.
 */

import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";

import {
  CountersignError,
  errorFromOAuth,
  Expired,
  ServerError,
  Unreachable,
} from "./errors.js";
import {
  checkSameAction,
  RemoteJwks,
  verifyAccessToken,
  type AccessTokenClaims,
  type KeySource,
} from "./token.js";

/** How the server delivers the outcome; must match how the client was registered (`countersign client add --mode`). */
export type DeliveryMode = "poll" | "ping" | "push";

export interface ClientOptions {
  /** The server's issuer URL (its discovery document is at `URL/.well-known/openid-configuration`). */
  url: string;
  clientId: string;
  clientSecret: string;
  /** Default `poll`. Ping and push clients must also route their notification endpoint to {@link CountersignClient.notificationHandler}. */
  deliveryMode?: DeliveryMode;
  /** Time limit of each HTTP request in milliseconds (default 10 000). */
  timeoutMs?: number;
  /** A `fetch` to use instead of the global one. */
  fetch?: typeof fetch;
}

/** The server's discovery metadata (OpenID Connect Discovery 1.0, CIBA Core section 4). */
export interface ServerMetadata {
  issuer: string;
  token_endpoint: string;
  backchannel_authentication_endpoint: string;
  jwks_uri: string;
  backchannel_token_delivery_modes_supported?: string[];
  [key: string]: unknown;
}

/** What the approver is asked to approve. */
export interface ApprovalRequest {
  /** The approver: their id, or the e-mail address they were registered with (`login_hint`). */
  approver: string;
  /** The short text shown to the approver with the action (CIBA `binding_message`). */
  bindingMessage: string;
  /** The exact action (RFC 9396 `authorization_details`): a JSON array of objects, each with a `type`. */
  authorizationDetails: unknown[];
  /** Seconds the approver has to decide (`requested_expiry`); the server's default when absent. */
  requestedExpiry?: number;
  /** OAuth scope; `openid` is added when missing. Default `openid`. */
  scope?: string;
}

/** An open request: what the server answered to the backchannel authentication request. */
export interface PendingApproval {
  authReqId: string;
  /** Seconds the request lives. */
  expiresIn: number;
  /** Seconds to wait between polls. */
  interval: number;
  /** When the request expires (milliseconds since the epoch, this machine's clock). */
  expiresAt: number;
  /** What was asked, kept to check the token against. */
  authorizationDetails: unknown[];
}

/** The tokens of an approved request (CIBA section 10.1.1). */
export interface TokenSet {
  accessToken: string;
  idToken: string | undefined;
  tokenType: string;
  expiresIn: number | undefined;
  scope: string | undefined;
  authorizationDetails: unknown;
  /** The whole token response. */
  raw: Record<string, unknown>;
}

/** One poll of the token endpoint, as told to {@link WaitOptions.onPoll}. */
export interface PollEvent {
  /** The seconds waited before this poll. */
  waited: number;
  /** The OAuth error code the server answered, or `ok`. */
  outcome: string;
  /** The interval in force after this answer. */
  interval: number;
}

export interface WaitOptions {
  signal?: AbortSignal;
  /** Called after every answer of the token endpoint (poll and ping mode). */
  onPoll?: (e: PollEvent) => void;
}

const CIBA_GRANT = "urn:openid:params:grant-type:ciba";
/** Consecutive failed polls (no answer, or 5xx) tolerated before giving up. */
const MAX_POLL_FAILURES = 3;
/** A ping client polls anyway this often, in case a ping was lost. */
const PING_FALLBACK_MS = 30_000;
/** The longest notification body read (a push carries both tokens). */
const MAX_NOTIFICATION_BYTES = 64 * 1024;

interface Waiter {
  tokenDigest: Buffer;
  authReqId: string | undefined;
  notification: Record<string, unknown> | undefined;
  wake: (() => void) | undefined;
}

/** Sleeps `ms`, or rejects with the signal's reason when it aborts. */
function sleep(ms: number, signal?: AbortSignal, wake?: (w: () => void) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const done = () => {
      clearTimeout(t);
      signal?.removeEventListener("abort", onAbort);
      resolve();
    };
    const onAbort = () => {
      clearTimeout(t);
      reject(signal?.reason);
    };
    const t = setTimeout(done, Math.max(0, ms));
    signal?.addEventListener("abort", onAbort, { once: true });
    wake?.(done);
  });
}

function sha256(s: string): Buffer {
  return createHash("sha256").update(s, "utf8").digest();
}

function toTokenSet(body: Record<string, unknown>): TokenSet {
  if (typeof body.access_token !== "string" || body.access_token.length === 0) {
    throw new ServerError("invalid_response", "the token response has no access_token");
  }
  return {
    accessToken: body.access_token,
    idToken: typeof body.id_token === "string" ? body.id_token : undefined,
    tokenType: typeof body.token_type === "string" ? body.token_type : "Bearer",
    expiresIn: typeof body.expires_in === "number" ? body.expires_in : undefined,
    scope: typeof body.scope === "string" ? body.scope : undefined,
    authorizationDetails: body.authorization_details,
    raw: body,
  };
}

/** A CIBA client of one Countersign server. */
export class CountersignClient {
  readonly url: string;
  readonly clientId: string;
  readonly deliveryMode: DeliveryMode;
  // An ECMAScript private field: not an own property, so neither console.log nor JSON shows it.
  readonly #secret: string;
  private readonly timeoutMs: number;
  private readonly fetchImpl: typeof fetch;
  private metadataPromise: Promise<ServerMetadata> | undefined;
  private jwks: KeySource | undefined;
  private readonly pending = new Map<string, PendingApproval>();
  private readonly waiters = new Set<Waiter>();

  constructor(options: ClientOptions) {
    this.url = options.url.replace(/\/+$/, "");
    this.clientId = options.clientId;
    this.#secret = options.clientSecret;
    this.deliveryMode = options.deliveryMode ?? "poll";
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.fetchImpl = options.fetch ?? fetch;
  }

  private async http(url: string, init: RequestInit, signal?: AbortSignal): Promise<Response> {
    const timeout = AbortSignal.timeout(this.timeoutMs);
    const s = signal ? AbortSignal.any([signal, timeout]) : timeout;
    try {
      return await this.fetchImpl(url, { ...init, signal: s, redirect: "error" });
    } catch (e) {
      if (signal?.aborted) throw signal.reason;
      throw new Unreachable("unreachable", `no answer from ${new URL(url).origin}: ${describeFetchError(e)}`, { cause: e });
    }
  }

  private async getJson(url: string, signal?: AbortSignal): Promise<unknown> {
    const r = await this.http(url, { headers: { accept: "application/json" } }, signal);
    const text = await r.text();
    if (!r.ok) throw new ServerError("http_error", `GET ${url} answered ${r.status}`, { status: r.status });
    try {
      return JSON.parse(text);
    } catch {
      throw new ServerError("invalid_response", `GET ${url} did not answer JSON`, { status: r.status });
    }
  }

  /**
   * The server's discovery metadata, fetched once. Its `issuer` must be the configured URL
   * (OpenID Connect Discovery 1.0 section 4.3): tokens are later checked against it.
   */
  metadata(signal?: AbortSignal): Promise<ServerMetadata> {
    if (!this.metadataPromise) {
      const p = (async () => {
        const m = (await this.getJson(`${this.url}/.well-known/openid-configuration`, signal)) as ServerMetadata;
        for (const k of ["issuer", "token_endpoint", "backchannel_authentication_endpoint", "jwks_uri"] as const) {
          if (typeof m?.[k] !== "string") throw new ServerError("invalid_metadata", `the discovery document has no ${k}`);
        }
        if (m.issuer.replace(/\/+$/, "") !== this.url) {
          throw new ServerError("invalid_metadata", `the discovery document's issuer ${m.issuer} is not ${this.url}`);
        }
        const modes = m.backchannel_token_delivery_modes_supported;
        if (Array.isArray(modes) && !modes.includes(this.deliveryMode)) {
          throw new ServerError("invalid_metadata", `the server does not offer ${this.deliveryMode} delivery`);
        }
        return m;
      })();
      // A failed discovery is tried again on the next call rather than cached.
      p.catch(() => {
        if (this.metadataPromise === p) this.metadataPromise = undefined;
      });
      this.metadataPromise = p;
    }
    return this.metadataPromise;
  }

  private async postForm(
    url: string,
    params: Record<string, string>,
    signal?: AbortSignal,
  ): Promise<{ status: number; body: Record<string, unknown>; retryAfter: number | undefined }> {
    // client_secret_basic: id and secret form-urlencoded, then Base64 (RFC 6749 section 2.3.1).
    const basic = Buffer.from(`${encodeURIComponent(this.clientId)}:${encodeURIComponent(this.#secret)}`).toString("base64");
    const r = await this.http(
      url,
      {
        method: "POST",
        headers: {
          authorization: `Basic ${basic}`,
          "content-type": "application/x-www-form-urlencoded",
          accept: "application/json",
        },
        body: new URLSearchParams(params).toString(),
      },
      signal,
    );
    const text = await r.text();
    const ra = r.headers.get("retry-after");
    const retryAfter = ra !== null && /^\d+$/.test(ra.trim()) ? Number(ra.trim()) : undefined;
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
    if (body === null || typeof body !== "object" || Array.isArray(body)) {
      if (r.status >= 500 || r.status === 429) {
        return { status: r.status, body: { error: r.status === 429 ? "too_many_requests" : "server_error" }, retryAfter };
      }
      throw new ServerError("invalid_response", `${url} answered ${r.status} without a JSON object`, { status: r.status });
    }
    return { status: r.status, body: body as Record<string, unknown>, retryAfter };
  }

  private oauthError(status: number, body: Record<string, unknown>, retryAfter?: number): CountersignError {
    const code = typeof body.error === "string" ? body.error : status >= 500 ? "server_error" : "invalid_response";
    const desc = typeof body.error_description === "string" ? body.error_description : undefined;
    return errorFromOAuth(status, code, desc, retryAfter);
  }

  /**
   * Asks the approver to approve the action (CIBA section 7, the backchannel authentication
   * request). Returns as soon as the server has the request; the decision comes later
   * ({@link waitForDecision}). Throws `InvalidRequest` (a parameter the server refused,
   * an unknown approver), `InvalidClient`, `RateLimited`, `ServerError` or `Unreachable`.
   */
  async requestApproval(req: ApprovalRequest, options: { signal?: AbortSignal } = {}): Promise<PendingApproval> {
    if (!Array.isArray(req.authorizationDetails)) {
      throw new TypeError("authorizationDetails must be an array of objects (RFC 9396)");
    }
    const m = await this.metadata(options.signal);
    const scope = req.scope ?? "openid";
    const params: Record<string, string> = {
      scope: scope.split(" ").includes("openid") ? scope : `openid ${scope}`,
      login_hint: req.approver,
      binding_message: req.bindingMessage,
      authorization_details: JSON.stringify(req.authorizationDetails),
    };
    if (req.requestedExpiry !== undefined) params.requested_expiry = String(req.requestedExpiry);
    let waiter: Waiter | undefined;
    if (this.deliveryMode !== "poll") {
      // Registered before the request is sent: the notification may come before this call returns.
      const token = randomBytes(32).toString("base64url");
      params.client_notification_token = token;
      waiter = { tokenDigest: sha256(token), authReqId: undefined, notification: undefined, wake: undefined };
      this.waiters.add(waiter);
    }
    try {
      const r = await this.postForm(m.backchannel_authentication_endpoint, params, options.signal);
      if (r.status !== 200) throw this.oauthError(r.status, r.body, r.retryAfter);
      const { auth_req_id, expires_in, interval } = r.body;
      if (typeof auth_req_id !== "string" || typeof expires_in !== "number") {
        throw new ServerError("invalid_response", "the answer has no auth_req_id or expires_in");
      }
      const pending: PendingApproval = {
        authReqId: auth_req_id,
        expiresIn: expires_in,
        interval: typeof interval === "number" && interval > 0 ? interval : 5,
        expiresAt: Date.now() + expires_in * 1000,
        authorizationDetails: req.authorizationDetails,
      };
      if (waiter) waiter.authReqId = auth_req_id;
      this.pending.set(auth_req_id, pending);
      return pending;
    } catch (e) {
      if (waiter) this.waiters.delete(waiter);
      throw e;
    }
  }

  /**
   * One token request (CIBA section 10.1). Resolves with the tokens of an approved request;
   * throws the typed error of any other answer (`authorization_pending` and `slow_down` too,
   * as a `CountersignError` with that code).
   */
  async fetchToken(authReqId: string, options: { signal?: AbortSignal } = {}): Promise<TokenSet> {
    const m = await this.metadata(options.signal);
    const r = await this.postForm(
      m.token_endpoint,
      { grant_type: CIBA_GRANT, auth_req_id: authReqId },
      options.signal,
    );
    if (r.status === 200) return toTokenSet(r.body);
    const code = r.body.error;
    if (code === "authorization_pending" || code === "slow_down") {
      const desc = typeof r.body.error_description === "string" ? r.body.error_description : undefined;
      throw new CountersignError(code, desc, { status: r.status });
    }
    throw this.oauthError(r.status, r.body, r.retryAfter);
  }

  /**
   * Waits for the decision on a request made by {@link requestApproval} and resolves with its
   * tokens. Poll mode polls the token endpoint every `interval` seconds, adds 5 seconds on
   * `slow_down` (CIBA section 11), waits `Retry-After` when the server sends one; ping mode
   * fetches the tokens when the ping arrives (and polls every 30 s in case a ping was lost);
   * push mode takes the tokens from the push. Rejects with `AccessDenied`, `Expired`,
   * `InvalidGrant`, `TransactionFailed`, `ServerError`, `Unreachable`, or the signal's reason.
   */
  async waitForDecision(request: string | PendingApproval, options: WaitOptions = {}): Promise<TokenSet> {
    const pending = typeof request === "string" ? this.pending.get(request) : request;
    if (!pending) throw new TypeError("unknown auth_req_id: pass the PendingApproval that requestApproval returned");
    try {
      switch (this.deliveryMode) {
        case "poll":
          return await this.poll(pending, options);
        case "ping":
          return await this.waitPing(pending, options);
        default:
          return await this.waitPush(pending, options);
      }
    } finally {
      this.pending.delete(pending.authReqId);
      for (const w of this.waiters) if (w.authReqId === pending.authReqId) this.waiters.delete(w);
    }
  }

  /** {@link requestApproval} then {@link waitForDecision}. */
  async approve(req: ApprovalRequest, options: WaitOptions = {}): Promise<TokenSet> {
    const pending = await this.requestApproval(req, options);
    return this.waitForDecision(pending, options);
  }

  private async poll(pending: PendingApproval, options: WaitOptions): Promise<TokenSet> {
    // The interval the server gave for this request, whatever the caller's copy says.
    const serverInterval = this.pending.get(pending.authReqId)?.interval ?? pending.interval;
    let interval = pending.interval;
    let wait = interval;
    let failures = 0;
    for (;;) {
      await sleep(wait * 1000, options.signal);
      const waited = wait;
      let outcome = "ok";
      try {
        const t = await this.fetchToken(pending.authReqId, options);
        options.onPoll?.({ waited, outcome, interval });
        return t;
      } catch (e) {
        if (!(e instanceof CountersignError)) throw e;
        outcome = e.code;
        wait = interval;
        if (e.code === "authorization_pending") {
          failures = 0;
        } else if (e.code === "slow_down") {
          // CIBA section 11: +5 s for the rest of this request. Never below the interval the
          // server gave, whatever this client was told to use.
          interval = Math.max(interval, serverInterval) + 5;
          wait = interval;
          failures = 0;
        } else if (e instanceof Unreachable || (e.status !== undefined && (e.status >= 500 || e.status === 429))) {
          failures += 1;
          if (failures >= MAX_POLL_FAILURES) {
            options.onPoll?.({ waited, outcome, interval });
            throw e;
          }
          wait = e.retryAfter !== undefined ? Math.max(e.retryAfter, interval) : interval;
        } else {
          options.onPoll?.({ waited, outcome, interval });
          throw e;
        }
        options.onPoll?.({ waited, outcome, interval: wait });
      }
    }
  }

  private waiterOf(authReqId: string): Waiter {
    for (const w of this.waiters) if (w.authReqId === authReqId) return w;
    throw new TypeError("no notification is expected for this auth_req_id (is the client in ping or push mode?)");
  }

  /** Waits until the waiter is notified or `ms` passes. */
  private async notifiedWithin(w: Waiter, ms: number, signal?: AbortSignal): Promise<boolean> {
    if (w.notification) return true;
    await sleep(ms, signal, (wake) => (w.wake = wake));
    w.wake = undefined;
    return w.notification !== undefined;
  }

  private async waitPing(pending: PendingApproval, options: WaitOptions): Promise<TokenSet> {
    const w = this.waiterOf(pending.authReqId);
    let failures = 0;
    const started = Date.now();
    for (;;) {
      // An expired ping request is not pinged (CIBA section 10.2): ask once just after expiry.
      const untilExpiry = pending.expiresAt - Date.now() + 1000;
      const notified = await this.notifiedWithin(w, Math.max(0, Math.min(PING_FALLBACK_MS, untilExpiry)), options.signal);
      const waited = (Date.now() - started) / 1000;
      try {
        const t = await this.fetchToken(pending.authReqId, options);
        options.onPoll?.({ waited, outcome: "ok", interval: pending.interval });
        return t;
      } catch (e) {
        const code = e instanceof CountersignError ? e.code : "error";
        options.onPoll?.({ waited, outcome: code, interval: pending.interval });
        if (e instanceof Unreachable && ++failures < MAX_POLL_FAILURES) {
          await sleep(pending.interval * 1000, options.signal);
          continue;
        }
        if (code !== "authorization_pending" && code !== "slow_down") throw e;
        if (notified) w.notification = undefined;
      }
    }
  }

  private async waitPush(pending: PendingApproval, options: WaitOptions): Promise<TokenSet> {
    const w = this.waiterOf(pending.authReqId);
    // The server pushes `expired_token` at expiry; a little slack for its delivery.
    const ms = pending.expiresAt - Date.now() + 10_000;
    if (!(await this.notifiedWithin(w, Math.max(0, ms), options.signal))) {
      throw new Expired("expired_token", "no push arrived before the request expired");
    }
    const body = w.notification as Record<string, unknown>;
    if (typeof body.error === "string") throw this.oauthError(400, body);
    return toTokenSet(body);
  }

  /**
   * A Node `http` request handler for this client's notification endpoint (CIBA section 10.2
   * ping, 10.3 push). It checks the bearer `client_notification_token` against those of this
   * client's open requests in constant time and that the body's `auth_req_id` is that request's,
   * answers `204`, and wakes the matching {@link waitForDecision}. Anything else is `401` (no
   * oracle on which requests are open), `405`, `413` or `400`.
   */
  notificationHandler(): (req: IncomingMessage, res: ServerResponse) => void {
    return (req, res) => {
      const answer = (status: number, headers: Record<string, string> = {}) => {
        res.writeHead(status, { "cache-control": "no-store", ...headers });
        res.end();
      };
      if (req.method !== "POST") return answer(405, { allow: "POST" });
      const chunks: Buffer[] = [];
      let size = 0;
      let tooLarge = false;
      req.on("data", (c: Buffer) => {
        size += c.length;
        if (size > MAX_NOTIFICATION_BYTES) {
          tooLarge = true;
          req.destroy();
          return;
        }
        chunks.push(c);
      });
      req.on("error", () => {
        if (!res.headersSent) answer(tooLarge ? 413 : 400);
      });
      req.on("end", () => {
        if (tooLarge) return answer(413);
        const auth = req.headers.authorization ?? "";
        const m = /^Bearer ([\x21-\x7e]+)$/i.exec(auth);
        const unauthorised = () => answer(401, { "www-authenticate": 'Bearer error="invalid_token"' });
        if (!m) return unauthorised();
        const digest = sha256(m[1] as string);
        let match: Waiter | undefined;
        // Every open request is compared, matched or not, each in constant time.
        for (const w of this.waiters) {
          if (timingSafeEqual(digest, w.tokenDigest) && !match) match = w;
        }
        let body: unknown;
        try {
          body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
        } catch {
          body = undefined;
        }
        if (!match) return unauthorised();
        if (body === null || typeof body !== "object" || typeof (body as { auth_req_id?: unknown }).auth_req_id !== "string") {
          return answer(400);
        }
        const b = body as Record<string, unknown>;
        // The token was handed out with one request: a notification naming another is refused.
        if (match.authReqId !== undefined && match.authReqId !== b.auth_req_id) return unauthorised();
        match.notification = b;
        match.wake?.();
        answer(204);
      });
    };
  }

  private keys(): KeySource {
    if (!this.jwks) {
      this.jwks = {
        key: async (kid: string) => {
          const m = await this.metadata();
          const remote = new RemoteJwks(m.jwks_uri, (u) => this.getJson(u));
          this.jwks = remote;
          return remote.key(kid);
        },
      };
    }
    return this.jwks;
  }

  /**
   * The execution check, agent side: verifies `accessToken` (signature with the server's
   * JWKS, `typ` at+jwt, `iss` this server, `aud` and `client_id` this client, not expired) and
   * that its `authorization_details` equal `action` by canonical JSON (RFC 8785). Resolves with
   * the token's claims; throws `InvalidToken` or `ExecutionMismatch` (nothing may run then),
   * or `Unreachable`/`ServerError` when the keys cannot be fetched.
   */
  async checkExecution(accessToken: string, action: unknown): Promise<AccessTokenClaims> {
    const m = await this.metadata();
    const claims = await verifyAccessToken(accessToken, this.keys(), { issuer: m.issuer, clientId: this.clientId });
    checkSameAction(claims.authorization_details, action);
    return claims;
  }
}

function describeFetchError(e: unknown): string {
  const err = e as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (err?.name === "TimeoutError") return "timed out";
  return err?.cause?.code ?? err?.cause?.message ?? err?.message ?? String(e);
}
