// LangChain.js: the same payment tool as a StructuredTool wrapped by Countersign. The chat
// model proposes the call; the wrapped tool runs it only after Alice approved it.

import { tool } from "@langchain/core/tools";
import { z } from "zod";
import { withApproval } from "@countersign/sdk/langchain";

export function payTool({ client, approver, pay }) {
  const raw = tool(async (input) => JSON.stringify(await pay(input)), {
    name: "pay",
    description: "Pay an invoice",
    schema: z.object({ amount: z.string(), currency: z.string(), creditor: z.string() }),
  });
  return withApproval(raw, {
    client,
    approver,
    describe: ({ amount, currency, creditor }) => ({
      bindingMessage: `Pay ${amount} ${currency} to ${creditor}`,
      authorizationDetails: [
        { type: "payment_initiation", instructedAmount: { amount, currency }, creditorName: creditor },
      ],
    }),
  });
}

/** One turn: the model picks the tool call, the wrapped tool runs it (or throws). */
export async function runAgent({ model, client, approver, pay, prompt = "Pay the ACME invoice" }) {
  const pay_ = payTool({ client, approver, pay });
  const ai = await model.bindTools([pay_]).invoke(prompt);
  const results = [];
  for (const call of ai.tool_calls ?? []) results.push(await pay_.invoke(call));
  return results;
}
