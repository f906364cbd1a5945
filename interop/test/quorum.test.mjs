// M-of-N approval in a real browser: the server runs with a 2-of-3 policy for payments over
// 1000 (`serve --policy`); two treasury approvers each use their own headless Chromium (separate
// profiles, separate virtual authenticators) and the third is a software passkey on the API. A
// 1500 payment appears in both live inboxes as "0 of 2 approvals"; the first approval leaves
// the agent at authorization_pending and the other inbox at "1 of 2"; the second releases the
// token, whose access token names both approvers with their log indexes. A 500 payment needs one
// approval. Screenshots of each inbox count go to test-artifacts/quorum-*.png.

import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";

import { ApiApprover } from "../lib/approver.mjs";
import { STEP_MS, CIBA_GRANT, ask, enrol, launch, signIn } from "../lib/browser.mjs";
import { runTool, Server, verifierBinary } from "../lib/server.mjs";

const CLIENT = { id: "agent-pay", secret: "quorum-secret-0123456789abcdef" };
const TREASURY = ["apv_t1", "apv_t2", "apv_t3"];
const RULE = "payments over 1000";
// The example policy, shared with the Rust tests.
const POLICY = await readFile(
  new URL("../../testvectors/policy-toml/treasury.toml", import.meta.url),
  "utf8",
);
assert.ok(POLICY.includes(`name = "${RULE}"`) && POLICY.includes(`when.clients = ["${CLIENT.id}"]`));

const payment = (amount, creditor) => [
  { type: "payment_initiation", instructedAmount: { currency: "EUR", amount }, creditorName: creditor },
];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const jwtPayload = (jwt) => JSON.parse(Buffer.from(jwt.split(".")[1], "base64url"));

describe("M-of-N approval in headless Chromium: two approvers, two browsers, a 2-of-3 policy", { timeout: 120_000 }, () => {
  let server;
  let policyDir;
  let policyIndex; // the policy entry's log index, from GET /v1/admin/policy
  let a; // apv_t1 in one browser
  let b; // apv_t2 in another
  let c; // apv_t3 on the API with a software passkey

  // The server allows one poll a second (--poll-interval 1); a faster poll is slow_down.
  const token = async (authReqId) => {
    await sleep(1100);
    return server.clientPost("/token", CLIENT.id, CLIENT.secret, { grant_type: CIBA_GRANT, auth_req_id: authReqId });
  };

  async function openInbox(br) {
    await br.page.goto(`${server.publicUrl}/approve`);
    await br.page.locator('body[data-page="inbox"]').waitFor({ timeout: STEP_MS });
  }

  /** The inbox item whose text holds `text`, and its quorum badge. */
  const item = (br, text) => br.page.locator("#inbox li", { hasText: text });
  const badge = (br, text) => item(br, text).locator(".badge.quorum");

  /** Waits until the open inbox shows `text` with the badge "HAVE of 2 approvals". */
  async function waitForCount(br, text, have, what) {
    await badge(br, text)
      .and(br.page.locator(`[data-have="${have}"][data-need="2"]`))
      .waitFor({ timeout: STEP_MS })
      .catch(async (e) => {
        const now = await item(br, text).textContent({ timeout: 1000 }).catch(() => "(no such item)");
        throw new Error(`${what}: no "${have} of 2 approvals" badge on "${text}"; the item says: ${now} (${e.message})`);
      });
    assert.equal((await badge(br, text).textContent()).trim(), `${have} of 2 approvals`);
  }

  /** Opens the request from the open inbox by clicking it; the page's hash check must pass. */
  async function openRequest(br, text) {
    await item(br, text).locator("a").click({ timeout: STEP_MS });
    await br.page.locator('body[data-page="request"]').waitFor({ timeout: STEP_MS });
    await br.page.locator("#hash-check.ok").waitFor({ timeout: STEP_MS });
  }

  before(async () => {
    policyDir = await mkdtemp(path.join(os.tmpdir(), "countersign-quorum-"));
    const policyFile = path.join(policyDir, "policy.toml");
    await writeFile(policyFile, POLICY);
    server = await Server.start({ host: "localhost", extraArgs: ["--policy", policyFile] });
    await server.addClient(CLIENT.id, CLIENT.secret);
    const links = [];
    for (const id of TREASURY) links.push(await server.addApprover(id, `${id}@example.com`, id));
    // Two browsers, one per approver: separate profiles, cookies and authenticators.
    [a, b] = await Promise.all([launch(server), launch(server)]);
    await enrol(a, links[0]);
    await enrol(b, links[1]);
    await signIn(a, server);
    await signIn(b, server);
    c = await ApiApprover.create(server);
    await c.enrol(links[2]);
    await c.signIn();
  }, { timeout: 60_000 });

  after(async () => {
    await a?.close();
    await b?.close();
    await server?.stop();
    if (policyDir) await rm(policyDir, { recursive: true, force: true });
  }, { timeout: 30_000 });

  test("the policy file is in force and logged", async () => {
    const admin = (await readFile(path.join(server.dataDir, "admin.token"), "utf8")).trim();
    const r = await fetch(`${server.url}/v1/admin/policy`, { headers: { authorization: `Bearer ${admin}` } });
    assert.equal(r.status, 200);
    const p = await r.json();
    assert.equal(p.policy.rules.length, 1);
    assert.equal(p.policy.rules[0].name, RULE);
    assert.equal(p.policy.rules[0].quorum, 2);
    assert.deepEqual(p.policy.groups.treasury, TREASURY);
    assert.ok(Number.isInteger(p.index), JSON.stringify(p));
    policyIndex = p.index;
  });
  let bigId;
  let logIndexA;

  test("a 1500 payment reaches both live inboxes as 0 of 2; one approval leaves the agent pending", async () => {
    await Promise.all([openInbox(a), openInbox(b)]);
    // login_hint names one treasury approver; the rule puts it in every treasury inbox.
    bigId = await ask(server, CLIENT, "apv_t1", "Pay 1500.00 EUR to ACME", payment("1500.00", "ACME Ltd"));
    const text = "Pay 1500.00 EUR to ACME";
    await waitForCount(a, text, 0, "apv_t1's live inbox");
    await waitForCount(b, text, 0, "apv_t2's live inbox");
    await a.shot("quorum", "inbox-t1-0-of-2");
    await b.shot("quorum", "inbox-t2-0-of-2");

    // The API view of the third approver: same request, same count, who may approve.
    const viaApi = await c.waitForRequest(text);
    assert.equal(viaApi.quorum, 2);
    assert.equal(viaApi.rule, RULE);
    assert.deepEqual(viaApi.approvers, TREASURY);
    assert.deepEqual(viaApi.approvals, []);

    const pending = await token(bigId);
    assert.equal(pending.body.error, "authorization_pending", JSON.stringify(pending.body));

    // apv_t1 approves by clicking.
    await openRequest(a, text);
    const q = a.page.locator("#quorum");
    assert.equal(await q.getAttribute("data-have"), "0");
    assert.equal(await q.getAttribute("data-need"), "2");
    assert.match(await q.textContent(), /0 of 2 approvals: this request needs 2 of its 3 approvers/);
    await a.shot("quorum", "request-t1");
    await a.page.locator("#approve").click();
    await a.page.locator("#receipt h2", { hasText: "You approved" }).waitFor({ timeout: STEP_MS }).catch(async (e) => {
      throw new Error(`the first approval was not recorded; status line: ${await a.statusText()} (${e.message})`);
    });
    const receipt = await a.page.locator("#receipt").textContent();
    const m = receipt.match(/public log at index (\d+)/);
    assert.ok(m, receipt);
    logIndexA = Number(m[1]);
    assert.match(receipt, /1 of 2 approvals/);
    assert.equal((await a.page.locator("#state").textContent()).trim(), "Waiting for the other approvers");
    assert.equal(await a.page.locator("#quorum").getAttribute("data-have"), "1");
    assert.equal(await a.page.locator("#approve").count(), 0, "no Approve button after approving");
    await a.shot("quorum", "receipt-t1-waiting");

    // Reloaded, the page still says so (the server's own rendering, not only the script's).
    await a.page.reload();
    const served = a.page.locator("section.receipt", { hasText: "You approved" });
    await served.waitFor({ timeout: STEP_MS });
    assert.match(await served.textContent(), new RegExp(`index ${logIndexA}\\b.*1 more approval`));
    assert.match(await a.page.locator("#state").textContent(), /^Waiting for the other approvers/);
    assert.equal(await a.page.locator("#quorum").getAttribute("data-have"), "1");
    assert.match(await a.page.locator("#quorum").textContent(), /Approved so far: you\./);
    assert.equal(await a.page.locator("#approve").count(), 0, "no Approve button on the reloaded page");

    // The agent still waits.
    const still = await token(bigId);
    assert.equal(still.status, 400, JSON.stringify(still.body));
    assert.equal(still.body.error, "authorization_pending", JSON.stringify(still.body));

    // The approver who approved no longer has it in their inbox.
    await openInbox(a);
    assert.equal(await item(a, text).count(), 0, "apv_t1's inbox no longer lists it");
  });

  test("the other approver sees 1 of 2 and the second approval releases a token naming both", async () => {
    const text = "Pay 1500.00 EUR to ACME";
    // apv_t2's inbox has been open all along: the count should change live; if the page was not
    // told, a reload must show it.
    let live = true;
    try {
      await badge(b, text).and(b.page.locator('[data-have="1"]')).waitFor({ timeout: 5000 });
    } catch {
      live = false;
      await openInbox(b);
    }
    console.log(`apv_t2's inbox showed "1 of 2 approvals" ${live ? "live (server-sent events)" : "after a reload"}`);
    await waitForCount(b, text, 1, "apv_t2's inbox after apv_t1 approved");
    await b.shot("quorum", "inbox-t2-1-of-2");

    const viaApi = (await c.inbox()).find((r) => r.binding_message === text);
    assert.ok(viaApi, "still in apv_t3's inbox");
    assert.deepEqual(
      viaApi.approvals.map((x) => [x.approver_id, x.log_index]),
      [["apv_t1", logIndexA]],
    );

    await openRequest(b, text);
    assert.equal(await b.page.locator("#quorum").getAttribute("data-have"), "1");
    assert.match(await b.page.locator("#quorum").textContent(), /Approved so far: apv_t1/);
    await b.shot("quorum", "request-t2-1-of-2");
    await b.page.locator("#approve").click();
    await b.page.locator("#receipt h2", { hasText: "Approved" }).waitFor({ timeout: STEP_MS }).catch(async (e) => {
      throw new Error(`the second approval was not recorded; status line: ${await b.statusText()} (${e.message})`);
    });
    const m = (await b.page.locator("#receipt").textContent()).match(/public log at index (\d+)/);
    assert.ok(m);
    const logIndexB = Number(m[1]);
    assert.ok(logIndexB > logIndexA, `${logIndexB} after ${logIndexA}`);
    await b.shot("quorum", "receipt-t2-approved");

    const ok = await token(bigId);
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    const at = jwtPayload(ok.body.access_token);
    assert.deepEqual(
      at.approvals.map((x) => [x.approver_id, x.log_index]),
      [["apv_t1", logIndexA], ["apv_t2", logIndexB]],
      JSON.stringify(at),
    );
    assert.equal(at.quorum, 2);
    assert.equal(at.rule, RULE);
    assert.equal(at.policy_index, policyIndex, JSON.stringify(at));
    assert.equal(at.log_index, logIndexB, "the last approval is the token's log_index");
    assert.equal(at.authorization_details[0].instructedAmount.amount, "1500.00");

    // Nobody is asked any more: gone from the third approver's inbox.
    assert.equal((await c.inbox()).filter((r) => r.binding_message === text).length, 0);
    // A token is issued once.
    const again = await token(bigId);
    assert.equal(again.body.error, "invalid_grant", JSON.stringify(again.body));
  });

  test("the 2-of-3 evidence bundle verifies offline, and not with an approval removed or the quorum lowered", async (t) => {
    const verify = verifierBinary();
    if (!verify) {
      t.skip("countersign-verify is not built (cargo build -p countersign-verify)");
      return;
    }
    assert.ok(bigId, "the 2-of-3 flow ran");
    const ev = await fetch(`${server.url}/v1/evidence/${encodeURIComponent(bigId)}`, {
      headers: { authorization: "Basic " + Buffer.from(`${CLIENT.id}:${CLIENT.secret}`).toString("base64") },
    });
    const text = await ev.text();
    assert.equal(ev.status, 200, text);
    const bundle = JSON.parse(text);
    assert.equal(bundle.version, 2);
    assert.equal(bundle.approvals.length, 1, "the other approval of the quorum");
    assert.equal(bundle.policy.index, policyIndex);
    assert.equal(bundle.statement.policy.quorum, 2);
    const logKey = await server.vkey();
    const run = async (name, b) => {
      const file = path.join(policyDir, `${name}.json`);
      await writeFile(file, JSON.stringify(b));
      return runTool(verify, ["bundle", file, "--log-key", logKey, "--rp-id", "localhost"]);
    };
    const ok = await run("evidence", bundle);
    assert.equal(ok.code, 0, `${ok.stdout}${ok.stderr}`);
    assert.match(ok.stdout, /OK/);
    const missing = await run("evidence-one-approval", { ...bundle, approvals: [] });
    assert.equal(missing.code, 1, `one approval removed: ${missing.stdout}${missing.stderr}`);
    const lowered = structuredClone(bundle);
    lowered.statement.policy.quorum = 1;
    const low = await run("evidence-quorum-1", lowered);
    assert.equal(low.code, 1, `quorum lowered: ${low.stdout}${low.stderr}`);
    console.log(`countersign-verify: ${ok.stdout.split("\n")[0]} / removed: ${(missing.stdout + missing.stderr).split("\n")[0]} / lowered: ${(low.stdout + low.stderr).split("\n")[0]}`);
  });

  test("a 500 payment needs one approval: no quorum badge, the token after one click", async () => {
    const text = "Pay 500.00 EUR to ACME";
    await openInbox(a);
    const id = await ask(server, CLIENT, "apv_t1", text, payment("500.00", "ACME Ltd"));
    await item(a, text).waitFor({ timeout: STEP_MS });
    assert.equal(await badge(a, text).count(), 0, "no quorum badge for a single approval");
    await a.shot("quorum", "inbox-t1-500");
    // Only the named approver is asked.
    await sleep(300);
    assert.equal((await c.inbox()).filter((r) => r.binding_message === text).length, 0);
    await openRequest(a, text);
    await a.page.locator("#approve").click();
    await a.page.locator("#receipt h2", { hasText: "Approved" }).waitFor({ timeout: STEP_MS }).catch(async (e) => {
      throw new Error(`the 500 approval was not recorded; status line: ${await a.statusText()} (${e.message})`);
    });
    assert.doesNotMatch(await a.page.locator("#receipt").textContent(), /waits for/);
    const ok = await token(id);
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    const at = jwtPayload(ok.body.access_token);
    assert.equal(at.sub, "apv_t1");
    // Under the policy but matching no rule: the named approver alone, quorum 1, no rule.
    assert.equal(at.quorum, 1, JSON.stringify(at));
    assert.equal(at.rule, null, JSON.stringify(at));
    assert.equal(at.policy_index, policyIndex, JSON.stringify(at));
    assert.deepEqual(at.approvals.map((x) => x.approver_id), ["apv_t1"]);
    assert.equal(at.approvals[0].log_index, at.log_index);
  });
});
