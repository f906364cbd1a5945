// The LangChain.js wrapper with the real @langchain/core 1.x and its FakeStreamingChatModel
// (a fake tool-calling model, no network), against a live server.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { AIMessageChunk } from "@langchain/core/messages";
import { tool } from "@langchain/core/tools";
import { FakeStreamingChatModel } from "@langchain/core/utils/testing";
import { z } from "zod";

import { AccessDenied, CountersignClient, ExecutionMismatch, Expired, InvalidToken, Unreachable } from "../dist/index.js";
import { withApproval } from "../dist/langchain.js";
import { runAgent } from "../examples/langchain.mjs";
import { APPROVER, deadUrl, Live, tamperPayload } from "./support/live.mjs";

/** A fake chat model whose answer is one call of `pay` with `args`. */
function modelCalling(args) {
  return new FakeStreamingChatModel({
    chunks: [new AIMessageChunk({ content: "", tool_calls: [{ name: "pay", args, id: "call-1", type: "tool_call" }] })],
  });
}

const details = ({ amount, currency, creditor }) => [
  { type: "payment_initiation", instructedAmount: { amount, currency }, creditorName: creditor },
];
const message = ({ amount, currency, creditor }) => `Pay ${amount} ${currency} to ${creditor}`;
let n = 0;
const args = (amount) => ({ amount, currency: "EUR", creditor: `ACME lc ${++n}` });

function recorder() {
  const calls = [];
  return { calls, pay: async (input) => (calls.push(input), { paid: true }) };
}

describe("withApproval (LangChain.js StructuredTool) against a live server", { timeout: 120_000 }, () => {
  let live;
  let client;
  before(async () => {
    live = await Live.start();
    client = (await live.client("sdk-langchain")).client;
  }, { timeout: 60_000 });
  after(async () => live?.stop(), { timeout: 30_000 });

  function wrapped(pay, extra = {}, c = client) {
    const raw = tool(async (input) => JSON.stringify(await pay(input)), {
      name: "pay",
      description: "Pay an invoice",
      schema: z.object({ amount: z.string(), currency: z.string(), creditor: z.string() }),
    });
    const { requestedExpiry, ...rest } = extra;
    return withApproval(raw, {
      client: c,
      approver: APPROVER,
      describe: (a) => ({ bindingMessage: message(a), authorizationDetails: details(a), ...(requestedExpiry ? { requestedExpiry } : {}) }),
      ...rest,
    });
  }
  /** The model proposes the call; the wrapped tool is invoked with it, as an agent loop does. */
  async function callThroughModel(model, t) {
    const ai = await model.bindTools([t]).invoke("Pay the invoice");
    assert.equal(ai.tool_calls.length, 1);
    return t.invoke(ai.tool_calls[0]);
  }

  test("approved (the example): the tool runs exactly once and answers a ToolMessage", async () => {
    const a = args("10.00");
    const { calls, pay } = recorder();
    const [results] = await Promise.all([
      runAgent({ model: modelCalling(a), client, approver: APPROVER, pay }),
      live.decide(message(a), "approve"),
    ]);
    assert.deepEqual(calls, [a]);
    assert.equal(results.length, 1);
    assert.equal(results[0].tool_call_id, "call-1");
    assert.equal(results[0].content, JSON.stringify({ paid: true }));
  });

  test("the wrapped tool keeps the name, description and schema the model sees", () => {
    const t = wrapped(async () => ({}));
    assert.equal(t.name, "pay");
    assert.equal(t.description, "Pay an invoice");
    assert.deepEqual(Object.keys(t.schema.shape).sort(), ["amount", "creditor", "currency"]);
  });

  test("denied and expired: the tool never runs", async () => {
    const { calls, pay } = recorder();
    const a = args("20.00");
    const denied = callThroughModel(modelCalling(a), wrapped(pay));
    denied.catch(() => {});
    await live.decide(message(a), "deny");
    await assert.rejects(denied, AccessDenied);
    await assert.rejects(callThroughModel(modelCalling(args("21.00")), wrapped(pay, { requestedExpiry: 2 })), Expired);
    assert.equal(calls.length, 0);
  });

  test("a token approved for 10.00 does not run a call for 11.00; a tampered one runs nothing; the approved call runs once", async () => {
    const approved = args("10.00");
    const [tokens] = await Promise.all([
      client.approve({ approver: APPROVER, bindingMessage: message(approved), authorizationDetails: details(approved) }),
      live.decide(message(approved), "approve"),
    ]);
    const { calls, pay } = recorder();
    const t = wrapped(pay, { accessToken: () => tokens.accessToken });
    await assert.rejects(callThroughModel(modelCalling({ ...approved, amount: "11.00" }), t), ExecutionMismatch);
    const edited = tamperPayload(tokens.accessToken, (c) => (c.authorization_details[0].instructedAmount.amount = "11.00"));
    await assert.rejects(
      callThroughModel(modelCalling({ ...approved, amount: "11.00" }), wrapped(pay, { accessToken: () => edited })),
      InvalidToken,
    );
    assert.equal(calls.length, 0);
    await callThroughModel(modelCalling(approved), t);
    await assert.rejects(callThroughModel(modelCalling(approved), t), InvalidToken);
    assert.deepEqual(calls, [approved]);
  });

  test("server unreachable: the tool never runs", async () => {
    const { calls, pay } = recorder();
    const dead = new CountersignClient({ url: await deadUrl(), clientId: "x", clientSecret: "y", timeoutMs: 2000 });
    await assert.rejects(callThroughModel(modelCalling(args("13.00")), wrapped(pay, {}, dead)), Unreachable);
    assert.equal(calls.length, 0);
  });
});
