/**
 * LangGraph (`@langchain/langgraph` 1.x): an approval as a graph interrupt. The wrapped tool
 * interrupts the graph with what the approver must approve; the application resolves the
 * approval (with {@link resolveApproval}, or its own CIBA ping/push handling) and resumes the
 * graph with the decision (`new Command({ resume })`). On resume the tool trusts nothing in
 * the decision but a token that passes the execution check against its own arguments.
 *
 * No side effect happens before the interrupt, because LangGraph runs the node again from the
 * start on resume: the request is made by the application, once.
 */

import { interrupt } from "@langchain/langgraph";
import type { RunnableConfig } from "@langchain/core/runnables";
import { DynamicStructuredTool, type StructuredToolInterface } from "@langchain/core/tools";

import type { CountersignClient, WaitOptions } from "./client.js";
import { AccessDenied, errorFromOAuth, Expired, InvalidGrant, InvalidToken, TransactionFailed } from "./errors.js";
import { ApprovalGuard, snapshot, type ApprovalOptions } from "./guard.js";

/** The interrupt value: what the application asks the approver. */
export interface ApprovalInterrupt {
  type: "countersign.approval";
  tool: string;
  approver: string;
  binding_message: string;
  authorization_details: unknown[];
  scope?: string;
  requested_expiry?: number;
}

/** The resume value: the decision, as tokens or as the OAuth error. */
export type ApprovalDecision =
  | { access_token: string }
  | { error: string; error_description?: string };

export function isApprovalInterrupt(v: unknown): v is ApprovalInterrupt {
  return !!v && typeof v === "object" && (v as { type?: unknown }).type === "countersign.approval";
}

/**
 * The tool, interrupt variant: `options.client` is used on resume for the execution check
 * (the JWKS and the issuer), never to make a request.
 */
export function withApprovalInterrupt<A extends Record<string, unknown> = Record<string, unknown>>(
  tool: StructuredToolInterface,
  options: ApprovalOptions<A>,
): DynamicStructuredTool {
  const guard = new ApprovalGuard<A>(options);
  return new DynamicStructuredTool({
    name: tool.name,
    description: tool.description,
    schema: tool.schema as never,
    func: async (input: unknown, _runManager?: unknown, config?: RunnableConfig) => {
      const args = snapshot(input as A);
      const d = guard.describe(args);
      const request: ApprovalInterrupt = {
        type: "countersign.approval",
        tool: tool.name,
        approver: guard.approver(args),
        binding_message: d.bindingMessage,
        authorization_details: d.authorizationDetails,
        ...(d.scope !== undefined ? { scope: d.scope } : {}),
        ...(d.requestedExpiry !== undefined ? { requested_expiry: d.requestedExpiry } : {}),
      };
      const decision = interrupt<ApprovalInterrupt, unknown>(request);
      if (!decision || typeof decision !== "object") {
        throw new InvalidToken("invalid_token", "the graph was resumed without a decision");
      }
      const dec = decision as Record<string, unknown>;
      if (typeof dec.error === "string") {
        throw errorFromOAuth(400, dec.error, typeof dec.error_description === "string" ? dec.error_description : undefined);
      }
      if (typeof dec.access_token !== "string") {
        throw new InvalidToken("invalid_token", "the decision holds neither an access_token nor an error");
      }
      return guard.runChecked(dec.access_token, args, (checked) =>
        tool.invoke(checked as never, config?.signal ? { signal: config.signal } : {}),
      );
    },
  });
}

/**
 * The application's half: asks the approver what the interrupt says and waits for the
 * decision. Resolves with the resume value; a denial, expiry or refused grant becomes an
 * `{error}` decision (the tool refuses it on resume). Other failures (the server unreachable,
 * an abort) reject: the graph stays interrupted and can be resumed later.
 */
export async function resolveApproval(
  client: CountersignClient,
  request: ApprovalInterrupt,
  options: WaitOptions = {},
): Promise<ApprovalDecision> {
  try {
    const tokens = await client.approve(
      {
        approver: request.approver,
        bindingMessage: request.binding_message,
        authorizationDetails: request.authorization_details,
        ...(request.scope !== undefined ? { scope: request.scope } : {}),
        ...(request.requested_expiry !== undefined ? { requestedExpiry: request.requested_expiry } : {}),
      },
      options,
    );
    return { access_token: tokens.accessToken };
  } catch (e) {
    if (e instanceof AccessDenied || e instanceof Expired || e instanceof InvalidGrant || e instanceof TransactionFailed) {
      return e.description !== undefined ? { error: e.code, error_description: e.description } : { error: e.code };
    }
    throw e;
  }
}

export type { ApprovalOptions, ActionDescription } from "./guard.js";
