/**
 * LangChain.js (`@langchain/core` 1.x): `withApproval(tool, options)` returns a
 * `StructuredTool` with the same name, description and schema, that runs the original only
 * after approval and the execution check.
 */

import type { RunnableConfig } from "@langchain/core/runnables";
import { DynamicStructuredTool, type StructuredToolInterface } from "@langchain/core/tools";

import { ApprovalGuard, type ApprovalOptions } from "./guard.js";

export interface LangChainApprovalOptions<A> extends ApprovalOptions<A> {
  /** A token approved before the call, used instead of asking again (still checked against the arguments). */
  accessToken?: (args: A, config: RunnableConfig | undefined) => string | undefined;
}

/**
 * Wraps a LangChain structured tool. Denial, expiry, an unreachable server, a token for other
 * arguments or a reused token make the call throw (a `ToolNode` turns that into an error
 * `ToolMessage`); the original tool is not invoked.
 */
export function withApproval<A extends Record<string, unknown> = Record<string, unknown>>(
  tool: StructuredToolInterface,
  options: LangChainApprovalOptions<A>,
): DynamicStructuredTool {
  const guard = new ApprovalGuard<A>(options);
  return new DynamicStructuredTool({
    name: tool.name,
    description: tool.description,
    // The same schema: the model sees the same tool, the arguments are validated once here.
    schema: tool.schema as never,
    func: async (input: unknown, _runManager?: unknown, config?: RunnableConfig) => {
      const args = input as A;
      return guard.run(
        args,
        // Only the abort signal is passed on: the outer call's tool-call id and callbacks belong to the wrapper.
        (checked) => tool.invoke(checked as never, config?.signal ? { signal: config.signal } : {}),
        {
          ...(config?.signal ? { signal: config.signal } : {}),
          token: options.accessToken?.(args, config),
        },
      );
    },
  });
}

export type { ApprovalOptions, ActionDescription } from "./guard.js";
