/**
 * Typed errors. Every failure the agent can meet is one of these, so a caller can tell "the
 * person said no" from "the server is down" without parsing messages. Each carries the OAuth
 * `error` code (RFC 6749 section 5.2, CIBA Core section 11 and 13) and the server's
 * `error_description` when the server sent them.
 */
export class CountersignError extends Error {
  /** The OAuth error code, or a code of ours for failures that are not OAuth answers. */
  readonly code: string;
  /** The server's `error_description`, when it sent one. */
  readonly description: string | undefined;
  /** The HTTP status of the answer, when there was one. */
  readonly status: number | undefined;
  /** The answer's `Retry-After`, in seconds, when it had one (429, 503). */
  readonly retryAfter: number | undefined;

  constructor(code: string, description?: string, options?: { status?: number; cause?: unknown; retryAfter?: number }) {
    super(description ? `${code}: ${description}` : code, { cause: options?.cause });
    this.name = new.target.name;
    this.code = code;
    this.description = description;
    this.status = options?.status;
    this.retryAfter = options?.retryAfter;
  }
}

/** The approver denied the request (`access_denied`). */
export class AccessDenied extends CountersignError {}

/** The request expired before it was decided, or before its tokens were collected (`expired_token`). */
export class Expired extends CountersignError {}

/** The `auth_req_id` is unknown, not this client's, or its tokens were already issued (`invalid_grant`). */
export class InvalidGrant extends CountersignError {}

/** The server could not issue the tokens of an approved request (`transaction_failed`, push mode). */
export class TransactionFailed extends CountersignError {}

/** The server refused the request itself: a bad parameter, an unknown approver, an unsupported action type. */
export class InvalidRequest extends CountersignError {}

/** The client's credentials were refused (`invalid_client`, `unauthorized_client`). */
export class InvalidClient extends CountersignError {}

/** Too many open requests or requests per second; `retryAfter` is the server's `Retry-After` in seconds. */
export class RateLimited extends CountersignError {}

/** A 5xx answer, or an answer that is not the JSON the protocol promises. */
export class ServerError extends CountersignError {}

/** No answer at all: connection refused, DNS, TLS, timeout. */
export class Unreachable extends CountersignError {}

/**
 * The access token is not a valid token of this server for this client: bad signature, unknown
 * key, wrong issuer, audience or type, expired, malformed, or already used.
 */
export class InvalidToken extends CountersignError {}

/**
 * The token is valid but approves a different action than the one about to run: the arguments
 * drifted between approval and execution. Nothing was run.
 */
export class ExecutionMismatch extends CountersignError {
  /** The canonical JSON (RFC 8785) of the approved `authorization_details`. */
  readonly approved: string;
  /** The canonical JSON of the action that was about to run. */
  readonly attempted: string;
  constructor(approved: string, attempted: string) {
    super(
      "execution_mismatch",
      "the token approves a different action than the one about to run; nothing was run",
    );
    this.approved = approved;
    this.attempted = attempted;
  }
}

/** Maps an OAuth error answer to its typed error. */
export function errorFromOAuth(
  status: number,
  code: string,
  description: string | undefined,
  retryAfter?: number,
): CountersignError {
  const o = retryAfter === undefined ? { status } : { status, retryAfter };
  switch (code) {
    case "access_denied":
      return new AccessDenied(code, description, { status });
    case "expired_token":
      return new Expired(code, description, { status });
    case "invalid_grant":
      return new InvalidGrant(code, description, { status });
    case "transaction_failed":
      return new TransactionFailed(code, description, { status });
    case "invalid_client":
    case "unauthorized_client":
      return new InvalidClient(code, description, { status });
    case "too_many_requests":
    case "slow_down":
      return new RateLimited(code, description, o);
  }
  if (status === 429) return new RateLimited(code, description, o);
  if (status >= 500) return new ServerError(code, description, o);
  return new InvalidRequest(code, description, o);
}
