/**
 * The one rule every wrapper follows: the tool body runs only after the approver approved AND
 * the access token passed the execution check against the very arguments the body receives.
 * Any error on the way (denial, expiry, a server that cannot be reached, a token for other
 * arguments, a tampered or reused token) is thrown and the body does not run.
 */

import type { CountersignClient, WaitOptions } from "./client.js";
import { InvalidToken } from "./errors.js";
import type { AccessTokenClaims } from "./token.js";

/** What the approver sees for one tool call, derived from its arguments. */
export interface ActionDescription {
  /** The short text shown with the action (CIBA `binding_message`). */
  bindingMessage: string;
  /** The exact action (RFC 9396), checked against the token before the tool runs. */
  authorizationDetails: unknown[];
  /** OAuth scope (default `openid`). */
  scope?: string;
  /** Seconds the approver has to decide. */
  requestedExpiry?: number;
}

/** How a wrapped tool asks for approval. */
export interface ApprovalOptions<A> {
  client: CountersignClient;
  /** Who approves: an approver id or e-mail, or a function of the arguments. */
  approver: string | ((args: A) => string);
  /** Turns the tool's arguments into what the approver approves. Must be a pure function of them. */
  describe: (args: A) => ActionDescription;
  /** Called once the request is open (to show "waiting for Alice…", or to log the id). */
  onRequested?: (pending: { authReqId: string; expiresIn: number }, args: A) => void;
}

/** A token obtained before the tool call (approval asked up front), used instead of asking again. */
export type PresetToken = string | undefined;

/** Deep copy frozen at every level: the arguments checked are the arguments run, whoever else holds a reference. */
export function snapshot<A>(args: A): A {
  const copy = structuredClone(args);
  const freeze = (v: unknown) => {
    if (v && typeof v === "object") {
      Object.freeze(v);
      for (const x of Object.values(v)) freeze(x);
    }
  };
  freeze(copy);
  return copy;
}

export class ApprovalGuard<A> {
  /** Tokens (by `jti`) that already ran this tool: one approval, one run. */
  private readonly used = new Set<string>();

  constructor(private readonly options: ApprovalOptions<A>) {}

  describe(args: A): ActionDescription {
    return this.options.describe(args);
  }

  approver(args: A): string {
    const a = this.options.approver;
    return typeof a === "function" ? a(args) : a;
  }

  get client(): CountersignClient {
    return this.options.client;
  }

  /** Asks the approver about `args` and waits for the tokens. */
  async obtain(args: A, wait: WaitOptions = {}): Promise<string> {
    const d = this.describe(args);
    const pending = await this.client.requestApproval(
      {
        approver: this.approver(args),
        bindingMessage: d.bindingMessage,
        authorizationDetails: d.authorizationDetails,
        ...(d.scope !== undefined ? { scope: d.scope } : {}),
        ...(d.requestedExpiry !== undefined ? { requestedExpiry: d.requestedExpiry } : {}),
      },
      wait,
    );
    this.options.onRequested?.({ authReqId: pending.authReqId, expiresIn: pending.expiresIn }, args);
    const tokens = await this.client.waitForDecision(pending, wait);
    return tokens.accessToken;
  }

  /**
   * Checks `token` against the action described by `args`, marks it used, and only then runs
   * `body(args)`.
   */
  async runChecked<R>(token: string, args: A, body: (args: A) => R | Promise<R>): Promise<R> {
    // Described again from the arguments the body will get, not reused from the request.
    const action = this.describe(args).authorizationDetails;
    const claims: AccessTokenClaims = await this.client.checkExecution(token, action);
    if (typeof claims.jti !== "string" || this.used.has(claims.jti)) {
      throw new InvalidToken("invalid_token", "this approval was already used to run the tool once");
    }
    this.used.add(claims.jti);
    return body(args);
  }

  /** Approval (or the preset token), the execution check, then the body. */
  async run<R>(
    rawArgs: A,
    body: (args: A) => R | Promise<R>,
    opts: { signal?: AbortSignal; token?: PresetToken } = {},
  ): Promise<R> {
    const args = snapshot(rawArgs);
    const wait: WaitOptions = opts.signal ? { signal: opts.signal } : {};
    const token = opts.token ?? (await this.obtain(args, wait));
    return this.runChecked(token, args, body);
  }
}
