// LangGraph: the approval is an interrupt. The graph stops at the payment tool with what Alice
// must approve; the application asks her (resolveApproval), then resumes the graph with her
// decision, and the tool runs only if the decision's token approves exactly its arguments.

import { Command, END, MemorySaver, MessagesAnnotation, START, StateGraph } from "@langchain/langgraph";
import { ToolNode } from "@langchain/langgraph/prebuilt";
import { tool } from "@langchain/core/tools";
import { z } from "zod";
import { isApprovalInterrupt, resolveApproval, withApprovalInterrupt } from "@countersign/sdk/langgraph";

export function buildGraph({ model, client, approver, pay }) {
  const payTool = withApprovalInterrupt(
    tool(async (input) => JSON.stringify(await pay(input)), {
      name: "pay",
      description: "Pay an invoice",
      schema: z.object({ amount: z.string(), currency: z.string(), creditor: z.string() }),
    }),
    {
      client,
      approver,
      describe: ({ amount, currency, creditor }) => ({
        bindingMessage: `Pay ${amount} ${currency} to ${creditor}`,
        authorizationDetails: [
          { type: "payment_initiation", instructedAmount: { amount, currency }, creditorName: creditor },
        ],
      }),
    },
  );
  const agent = async (state) => ({ messages: [await model.bindTools([payTool]).invoke(state.messages)] });
  return new StateGraph(MessagesAnnotation)
    .addNode("agent", agent)
    .addNode("tools", new ToolNode([payTool]))
    .addEdge(START, "agent")
    .addEdge("agent", "tools")
    .addEdge("tools", END)
    .compile({ checkpointer: new MemorySaver() });
}

/** Runs the graph to its interrupt, resolves the approval, resumes; returns the final state. */
export async function runAgent({ model, client, approver, pay, prompt = "Pay the ACME invoice", threadId = "t1" }) {
  const graph = buildGraph({ model, client, approver, pay });
  const config = { configurable: { thread_id: threadId } };
  let state = await graph.invoke({ messages: [{ role: "user", content: prompt }] }, config);
  while (state.__interrupt__?.length) {
    const request = state.__interrupt__[0].value;
    if (!isApprovalInterrupt(request)) throw new Error("unexpected interrupt");
    const decision = await resolveApproval(client, request);
    state = await graph.invoke(new Command({ resume: decision }), config);
  }
  return state;
}
