// The Vercel AI SDK wrapper with the real `ai` 5.x package and its MockLanguageModelV2 (no
// network), against a live server: the model calls the tool, the wrapper asks Alice, and the
// tool body runs only after her approval and the execution check.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { generateText, stepCountIs, tool } from "ai";
import { MockLanguageModelV2 } from "ai/test";
import { z } from "zod";

import { AccessDenied, CountersignClient, ExecutionMismatch, Expired, InvalidToken, Unreachable } from "../dist/index.js";
import { withApproval } from "../dist/ai.js";
import { runAgent } from "../examples/vercel-ai.mjs";
import { APPROVER, deadUrl, Live, tamperPayload, tamperSignature } from "./support/live.mjs";

/** A mock model whose one answer is a call of `pay` with `input`. */
function modelCalling(input) {
  return new MockLanguageModelV2({
    doGenerate: async () => ({
      content: [{ type: "tool-call", toolCallId: "call-1", toolName: "pay", input: JSON.stringify(input) }],
      finishReason: "tool-calls",
      usage: { inputTokens: 10, outputTokens: 5, totalTokens: 15 },
      warnings: [],
    }),
  });
}

const details = ({ amount, currency, creditor }) => [
  { type: "payment_initiation", instructedAmount: { amount, currency }, creditorName: creditor },
];
const message = ({ amount, currency, creditor }) => `Pay ${amount} ${currency} to ${creditor}`;

/** The side effect, counted. */
function recorder() {
  const calls = [];
  return { calls, pay: async (input) => (calls.push(input), { paid: true, reference: `ref-${calls.length}` }) };
}

function toolErrors(result) {
  return result.content.filter((p) => p.type === "tool-error").map((p) => p.error);
}

let n = 0;
const args = (amount) => ({ amount, currency: "EUR", creditor: `ACME ai ${++n}` });

describe("withApproval (Vercel AI SDK 5) against a live server", { timeout: 120_000 }, () => {
  let live;
  let client;
  before(async () => {
    live = await Live.start();
    client = (await live.client("sdk-ai")).client;
  }, { timeout: 60_000 });
  after(async () => live?.stop(), { timeout: 30_000 });

  function wrapped(pay, extra = {}) {
    return withApproval(
      tool({
        description: "Pay an invoice",
        inputSchema: z.object({ amount: z.string(), currency: z.string(), creditor: z.string() }),
        execute: async (input) => pay(input),
      }),
      { client, approver: APPROVER, describe: (a) => ({ bindingMessage: message(a), authorizationDetails: details(a), ...(extra.requestedExpiry ? { requestedExpiry: extra.requestedExpiry } : {}) }), ...extra },
    );
  }
  const run = (model, t) => generateText({ model, tools: { pay: t }, stopWhen: stepCountIs(1), prompt: "Pay the invoice" });

  test("approved (the example): the tool runs exactly once, with the approved arguments", async () => {
    const a = args("10.00");
    const { calls, pay } = recorder();
    const [result] = await Promise.all([
      runAgent({ model: modelCalling(a), client, approver: APPROVER, pay }),
      live.decide(message(a), "approve"),
    ]);
    assert.deepEqual(calls, [a]);
    assert.deepEqual(toolErrors(result), []);
    assert.deepEqual(result.toolResults.map((r) => r.output), [{ paid: true, reference: "ref-1" }]);
  });

  test("denied: the tool never runs; the model's step gets an AccessDenied tool error", async () => {
    const a = args("20.00");
    const { calls, pay } = recorder();
    const [result] = await Promise.all([run(modelCalling(a), wrapped(pay)), live.decide(message(a), "deny")]);
    assert.equal(calls.length, 0);
    const [err] = toolErrors(result);
    assert.ok(err instanceof AccessDenied, `${err}`);
  });

  test("expired: the tool never runs", async () => {
    const { calls, pay } = recorder();
    const result = await run(modelCalling(args("21.00")), wrapped(pay, { requestedExpiry: 2 }));
    assert.equal(calls.length, 0);
    assert.ok(toolErrors(result)[0] instanceof Expired);
  });

  test("a token approved for 10.00 does not run a call for 11.00; for 10.00 it runs once, then never again", async () => {
    const approved = args("10.00");
    const [tokens] = await Promise.all([
      client.approve({ approver: APPROVER, bindingMessage: message(approved), authorizationDetails: details(approved) }),
      live.decide(message(approved), "approve"),
    ]);
    const { calls, pay } = recorder();
    const t = wrapped(pay, { accessToken: () => tokens.accessToken });
    // The model asks for 11.00 with the token for 10.00: refused by the execution check.
    const drifted = await run(modelCalling({ ...approved, amount: "11.00" }), t);
    const [err] = toolErrors(drifted);
    assert.ok(err instanceof ExecutionMismatch, `${err}`);
    assert.match(err.approved, /"10\.00"/);
    assert.match(err.attempted, /"11\.00"/);
    assert.equal(calls.length, 0);
    // The approved arguments run, once.
    const ok = await run(modelCalling(approved), t);
    assert.deepEqual(toolErrors(ok), []);
    assert.deepEqual(calls, [approved]);
    const replay = await run(modelCalling(approved), t);
    assert.ok(toolErrors(replay)[0] instanceof InvalidToken);
    assert.equal(calls.length, 1, "one approval, one run");
  });

  test("a tampered token never runs the tool", async () => {
    const approved = args("12.00");
    const [tokens] = await Promise.all([
      client.approve({ approver: APPROVER, bindingMessage: message(approved), authorizationDetails: details(approved) }),
      live.decide(message(approved), "approve"),
    ]);
    const raised = { ...approved, amount: "1200.00" };
    const { calls, pay } = recorder();
    const edited = tamperPayload(tokens.accessToken, (c) => (c.authorization_details = details(raised)));
    let r = await run(modelCalling(raised), wrapped(pay, { accessToken: () => edited }));
    assert.ok(toolErrors(r)[0] instanceof InvalidToken);
    r = await run(modelCalling(approved), wrapped(pay, { accessToken: () => tamperSignature(tokens.accessToken) }));
    assert.ok(toolErrors(r)[0] instanceof InvalidToken);
    assert.equal(calls.length, 0);
  });

  test("server unreachable: the tool never runs", async () => {
    const { calls, pay } = recorder();
    const deadClient = new CountersignClient({ url: await deadUrl(), clientId: "sdk-ai", clientSecret: "x", timeoutMs: 2000 });
    const t = withApproval(
      tool({ description: "Pay", inputSchema: z.object({ amount: z.string(), currency: z.string(), creditor: z.string() }), execute: async (i) => pay(i) }),
      { client: deadClient, approver: APPROVER, describe: (a) => ({ bindingMessage: message(a), authorizationDetails: details(a) }) },
    );
    const r = await run(modelCalling(args("13.00")), t);
    assert.ok(toolErrors(r)[0] instanceof Unreachable);
    assert.equal(calls.length, 0);
  });
});
