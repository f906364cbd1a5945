// The LangGraph interrupt variant with the real @langchain/langgraph 1.x (StateGraph, ToolNode,
// MemorySaver, Command) and a fake tool-calling chat model, against a live server: the graph
// stops at the tool, the application resolves the approval, the graph resumes with the
// decision, and the tool runs only if the decision's token approves exactly its arguments.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { Command } from "@langchain/langgraph";
import { AIMessageChunk } from "@langchain/core/messages";
import { FakeStreamingChatModel } from "@langchain/core/utils/testing";

import { CountersignClient } from "../dist/index.js";
import { isApprovalInterrupt, resolveApproval } from "../dist/langgraph.js";
import { buildGraph, runAgent } from "../examples/langgraph.mjs";
import { APPROVER, deadUrl, Live, tamperSignature } from "./support/live.mjs";

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
const args = (amount) => ({ amount, currency: "EUR", creditor: `ACME lg ${++n}` });
function recorder() {
  const calls = [];
  return { calls, pay: async (input) => (calls.push(input), { paid: true }) };
}
/** The last message of the final state: the ToolNode's answer. */
const toolMessage = (state) => state.messages.at(-1);

describe("withApprovalInterrupt (LangGraph) against a live server", { timeout: 120_000 }, () => {
  let live;
  let client;
  before(async () => {
    live = await Live.start();
    client = (await live.client("sdk-langgraph")).client;
  }, { timeout: 60_000 });
  after(async () => live?.stop(), { timeout: 30_000 });

  test("approved (the example): interrupt, approval, resume; the tool runs exactly once", async () => {
    const a = args("10.00");
    const { calls, pay } = recorder();
    const [state] = await Promise.all([
      runAgent({ model: modelCalling(a), client, approver: APPROVER, pay, threadId: "approved" }),
      live.decide(message(a), "approve"),
    ]);
    assert.deepEqual(calls, [a]);
    assert.equal(toolMessage(state).getType(), "tool");
    assert.equal(toolMessage(state).content, JSON.stringify({ paid: true }));
    assert.equal(state.__interrupt__, undefined);
  });

  test("the graph stops at the interrupt with what the approver must approve, before asking anyone", async () => {
    const a = args("15.00");
    const { calls, pay } = recorder();
    const graph = buildGraph({ model: modelCalling(a), client, approver: APPROVER, pay });
    const state = await graph.invoke({ messages: [{ role: "user", content: "Pay" }] }, { configurable: { thread_id: "look" } });
    const value = state.__interrupt__?.[0]?.value;
    assert.ok(isApprovalInterrupt(value), JSON.stringify(state.__interrupt__));
    assert.equal(value.binding_message, message(a));
    assert.deepEqual(value.authorization_details, details(a));
    assert.equal(value.approver, APPROVER);
    assert.equal(calls.length, 0);
    assert.ok(!(await live.approver.inbox()).some((q) => q.binding_message === message(a)), "no request made by the graph itself");
  });

  test("denied and expired: the graph resumes with the error and the tool never runs", async () => {
    const { calls, pay } = recorder();
    const a = args("20.00");
    const [denied] = await Promise.all([
      runAgent({ model: modelCalling(a), client, approver: APPROVER, pay, threadId: "denied" }),
      live.decide(message(a), "deny"),
    ]);
    assert.match(String(toolMessage(denied).content), /access_denied/);
    assert.equal(toolMessage(denied).status, "error");

    const b = args("21.00");
    const graph = buildGraph({ model: modelCalling(b), client, approver: APPROVER, pay });
    const config = { configurable: { thread_id: "expired" } };
    const stopped = await graph.invoke({ messages: [{ role: "user", content: "Pay" }] }, config);
    const decision = await resolveApproval(client, { ...stopped.__interrupt__[0].value, requested_expiry: 2 });
    assert.equal(decision.error, "expired_token");
    const expired = await graph.invoke(new Command({ resume: decision }), config);
    assert.match(String(toolMessage(expired).content), /expired_token/);
    assert.equal(calls.length, 0);
  });

  test("resumed with a token for other arguments (10.00 approved, 11.00 called): refused by the execution check", async () => {
    const approved = args("10.00");
    const [tokens] = await Promise.all([
      client.approve({ approver: APPROVER, bindingMessage: message(approved), authorizationDetails: details(approved) }),
      live.decide(message(approved), "approve"),
    ]);
    const { calls, pay } = recorder();
    const graph = buildGraph({ model: modelCalling({ ...approved, amount: "11.00" }), client, approver: APPROVER, pay });
    const config = { configurable: { thread_id: "drift" } };
    await graph.invoke({ messages: [{ role: "user", content: "Pay" }] }, config);
    const state = await graph.invoke(new Command({ resume: { access_token: tokens.accessToken } }), config);
    assert.match(String(toolMessage(state).content), /execution_mismatch/);
    assert.equal(calls.length, 0);
  });

  test("resumed with a tampered token, with no decision, or with the server unreachable: the tool never runs", async () => {
    const a = args("12.00");
    const [tokens] = await Promise.all([
      client.approve({ approver: APPROVER, bindingMessage: message(a), authorizationDetails: details(a) }),
      live.decide(message(a), "approve"),
    ]);
    const { calls, pay } = recorder();
    const resumeWith = async (c, resume, thread) => {
      const graph = buildGraph({ model: modelCalling(a), client: c, approver: APPROVER, pay });
      const config = { configurable: { thread_id: thread } };
      await graph.invoke({ messages: [{ role: "user", content: "Pay" }] }, config);
      return toolMessage(await graph.invoke(new Command({ resume }), config));
    };
    assert.match(String((await resumeWith(client, { access_token: tamperSignature(tokens.accessToken) }, "tampered")).content), /invalid_token/);
    assert.match(String((await resumeWith(client, { approved: true }, "bare")).content), /invalid_token/);
    const dead = new CountersignClient({ url: await deadUrl(), clientId: "x", clientSecret: "y", timeoutMs: 2000 });
    assert.match(String((await resumeWith(dead, { access_token: tokens.accessToken }, "dead")).content), /unreachable/);
    await assert.rejects(resolveApproval(dead, { type: "countersign.approval", tool: "pay", approver: APPROVER, binding_message: "m", authorization_details: details(a) }), /unreachable/);
    assert.equal(calls.length, 0);
    // The genuine token, on its own thread, still runs the tool once.
    assert.equal((await resumeWith(client, { access_token: tokens.accessToken }, "genuine")).content, JSON.stringify({ paid: true }));
    assert.equal(calls.length, 1);
  });
});
