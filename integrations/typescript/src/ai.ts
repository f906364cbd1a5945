/**
 * Vercel AI SDK (`ai` 5.x): `withApproval(tool, options)` returns the same tool whose `execute`
 * runs only after the approver approved the call and its token passed the execution check.
 */

import type { Tool, ToolCallOptions } from "ai";

import { ApprovalGuard, type ApprovalOptions } from "./guard.js";

export interface AiApprovalOptions<I> extends ApprovalOptions<I> {
  /**
   * A token approved before the call (for example when the plan was approved up front): used
   * instead of asking again, and checked against the call's arguments like any other.
   */
  accessToken?: (input: I, options: ToolCallOptions) => string | undefined;
}

/**
 * Wraps an AI SDK tool. The returned tool has the same description and input schema; its
 * `execute` asks the approver (CIBA, with the tool call's abort signal), checks the token
 * against the exact input, and then calls the original `execute` with that input. A denial,
 * an expiry, an unreachable server or a token for other arguments rejects, and the AI SDK
 * reports it as a tool error: the original `execute` is not called.
 */
export function withApproval<I, O>(tool: Tool<I, O>, options: AiApprovalOptions<I>): Tool<I, O> {
  const execute = tool.execute;
  if (typeof execute !== "function") {
    throw new TypeError("withApproval needs a tool with an execute function");
  }
  const guard = new ApprovalGuard<I>(options);
  const wrapped = async (input: I, callOptions: ToolCallOptions): Promise<O> => {
    const token = options.accessToken?.(input, callOptions);
    return guard.run(
      input,
      async (checked) => {
        const out = execute(checked, callOptions);
        if (out && typeof out === "object" && Symbol.asyncIterator in out) {
          throw new TypeError("withApproval does not wrap streaming (async iterable) tools");
        }
        return (await out) as O;
      },
      {
        ...(callOptions?.abortSignal ? { signal: callOptions.abortSignal } : {}),
        token,
      },
    );
  };
  return { ...tool, execute: wrapped } as Tool<I, O>;
}

export type { ApprovalOptions, ActionDescription } from "./guard.js";
