// A real browser on the real pages: Debian's headless Chromium, driven by playwright-core, with
// the DevTools WebAuthn virtual authenticator as the approver's passkey. Enrols from the one-time
// link, signs in, approves one request and denies another in the live inbox by clicking the
// pages' buttons, checks what the agent gets at /token, and checks that a bogus signature
// (WebAuthn.setResponseOverrideBits) is refused with nothing logged. Screenshots go to
// test-artifacts/.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { STEP_MS, CIBA_GRANT, ask as askAs, enrol, launch, signIn } from "../lib/browser.mjs";
import { Server } from "../lib/server.mjs";

const CLIENT = { id: "browser-agent", secret: "browser-secret-0123456789" };
const APPROVER = "appr-bob";

describe("headless Chromium with a virtual authenticator on the approval pages", { timeout: 120_000 }, () => {
  let server;
  let b;
  let page;
  let enrolmentLink;

  const shot = (name) => b.shot("browser", name);
  const ask = (bindingMessage, details) => askAs(server, CLIENT, APPROVER, bindingMessage, details);
  const token = (authReqId) =>
    server.clientPost("/token", CLIENT.id, CLIENT.secret, { grant_type: CIBA_GRANT, auth_req_id: authReqId });
  const statusText = () => b.statusText();

  /** Opens the inbox and then the request whose text holds `text`, by clicking. */
  async function openFromInbox(text) {
    await page.goto(`${server.publicUrl}/approve`);
    await page.locator('body[data-page="inbox"]').waitFor({ timeout: STEP_MS });
    await page.locator("#inbox a", { hasText: text }).click({ timeout: STEP_MS });
    await page.locator('body[data-page="request"]').waitFor({ timeout: STEP_MS });
    // The page's own hash check must say it matches.
    await page.locator("#hash-check.ok").waitFor({ timeout: STEP_MS });
  }

  before(async () => {
    // The pages must run on http://localhost:PORT: a WebAuthn RP ID cannot be an IP address.
    server = await Server.start({ host: "localhost" });
    await server.addClient(CLIENT.id, CLIENT.secret);
    enrolmentLink = await server.addApprover(APPROVER, "bob@example.com", "Bob Example");
    b = await launch(server, { viewport: { width: 420, height: 860 } });
    page = b.page;
  }, { timeout: 60_000 });

  after(async () => {
    await b?.close();
    await server?.stop();
  }, { timeout: 30_000 });

  test("enrol a passkey from the one-time link", async () => {
    assert.ok(enrolmentLink.startsWith(`${server.publicUrl}/enrol/`), enrolmentLink);
    const before = await server.checkpoint();
    await enrol(b, enrolmentLink);
    const { credentials } = await b.cdp.send("WebAuthn.getCredentials", { authenticatorId: b.authenticatorId });
    assert.equal(credentials.length, 1, "the virtual authenticator holds one credential");
    assert.equal(credentials[0].isResidentCredential, true, "a discoverable credential (passkey)");
    const afterCp = await server.checkpoint();
    assert.equal(afterCp.size, before.size + 1, "the enrolment is one new leaf");
    // The link is one-time.
    const again = await page.goto(enrolmentLink);
    assert.equal(again.status(), 410);
  });

  test("sign in with the passkey", async () => {
    await signIn(b, server);
    assert.match(await page.locator("h1").textContent(), new RegExp(APPROVER));
    const cookies = await b.context.cookies(server.publicUrl);
    const session = cookies.find((c) => c.name === "countersign_session");
    assert.ok(session, "a session cookie is set");
    assert.equal(session.httpOnly, true);
    assert.equal(session.sameSite, "Strict");
  });

  let approvedId;
  let deniedId;

  test("approve one request and deny another from the live inbox; the agent gets tokens and access_denied", async () => {
    // The inbox is open; requests arrive while it is shown and appear through server-sent events.
    await page.goto(`${server.publicUrl}/approve`);
    await page.locator('body[data-page="inbox"]').waitFor();
    approvedId = await ask("Pay 42.00 EUR to ACME", [
      { type: "payment_initiation", instructedAmount: { currency: "EUR", amount: "42.00" }, creditorName: "ACME Ltd" },
    ]);
    deniedId = await ask("Delete the production database", [{ type: "shell_command", command: "dropdb prod" }]);
    await page.locator("#inbox a", { hasText: "Pay 42.00 EUR to ACME" }).waitFor({ timeout: STEP_MS }).catch((e) => {
      throw new Error(`the open inbox did not show the new request live (SSE): ${e.message}`);
    });
    await page.locator("#inbox a", { hasText: "Delete the production database" }).waitFor({ timeout: STEP_MS });
    await shot("inbox");

    // Before any decision the agent is told to wait.
    const pending = await token(approvedId);
    assert.equal(pending.body.error, "authorization_pending", JSON.stringify(pending.body));

    // Approve the payment.
    await openFromInbox("Pay 42.00 EUR to ACME");
    assert.match(await page.locator("#headline").textContent(), /Pay 42\.00 EUR to ACME Ltd/);
    await shot("request-approve");
    await page.locator("#approve").click();
    await page.locator("#receipt h2", { hasText: "Approved" }).waitFor({ timeout: STEP_MS }).catch(async (e) => {
      throw new Error(`approval not recorded; status line: ${await statusText()} (${e.message})`);
    });
    assert.match(await page.locator("#receipt").textContent(), /in the public log at index \d+/);
    await shot("receipt-approved");

    // Deny the deletion.
    await openFromInbox("Delete the production database");
    await shot("request-deny");
    await page.locator("#deny").click();
    await page.locator("#receipt h2", { hasText: "Denied" }).waitFor({ timeout: STEP_MS }).catch(async (e) => {
      throw new Error(`denial not recorded; status line: ${await statusText()} (${e.message})`);
    });

    // Both are gone from the inbox.
    await page.goto(`${server.publicUrl}/approve`);
    await page.locator('body[data-page="inbox"]').waitFor();
    assert.equal(await page.locator("#inbox a").count(), 0);

    // The agent's outcome.
    const ok = await token(approvedId);
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.ok(ok.body.access_token && ok.body.id_token);
    const at = JSON.parse(Buffer.from(ok.body.access_token.split(".")[1], "base64url"));
    assert.equal(at.sub, APPROVER);
    assert.equal(at.authorization_details[0].creditorName, "ACME Ltd");
    const denied = await token(deniedId);
    assert.equal(denied.status, 400);
    assert.equal(denied.body.error, "access_denied");
  });

  test("a bogus signature from the authenticator is refused and nothing is logged", async () => {
    const authReqId = await ask("Send 9999.00 EUR to Mallory", [
      { type: "payment_initiation", instructedAmount: { currency: "EUR", amount: "9999.00" }, creditorName: "Mallory" },
    ]);
    await openFromInbox("Send 9999.00 EUR to Mallory");
    const before = await server.checkpoint();
    const { cdp, authenticatorId } = b;
    await cdp.send("WebAuthn.setResponseOverrideBits", { authenticatorId, isBogusSignature: true });
    try {
      await page.locator("#approve").click();
      await page.locator("#status.error").waitFor({ timeout: STEP_MS });
    } finally {
      await cdp.send("WebAuthn.setResponseOverrideBits", { authenticatorId, isBogusSignature: false });
    }
    const msg = await statusText();
    assert.match(msg, /Nothing was recorded/, msg);
    // The operator hears of it: a WARN line naming the request and the reason, and a counter.
    const requestId = await page.evaluate(() => document.body.dataset.request);
    const warn = server.stderr.split("\n").find((l) => l.includes("WARN") && l.includes("decision refused"));
    assert.ok(warn && warn.includes(`request_id=${requestId}`) && warn.includes("reason=\"invalid_assertion\""), `server log: ${warn}`);
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    assert.match(metrics, /^countersign_ciba_decisions_refused_total\{reason="invalid_assertion"\} 1$/m);
    await shot("request-bogus-signature");
    assert.equal(await page.locator("#receipt h2").count(), 0, "no receipt");
    // Give a wrongly accepted append time to show up, then compare tree sizes.
    await new Promise((r) => setTimeout(r, 1500));
    const afterCp = await server.checkpoint();
    assert.equal(afterCp.size, before.size, `the tree did not grow (${before.size} -> ${afterCp.size})`);
    const tok = await token(authReqId);
    assert.equal(tok.body.error, "authorization_pending", JSON.stringify(tok.body));

    // The refused attempt left the request decidable: a genuine signature now records a denial.
    await page.locator("#deny:not([disabled])").click();
    await page.locator("#receipt h2", { hasText: "Denied" }).waitFor({ timeout: STEP_MS }).catch(async (e) => {
      throw new Error(`denial after the bogus attempt not recorded; status line: ${await statusText()} (${e.message})`);
    });
    assert.equal((await server.checkpoint()).size, before.size + 1);
    assert.equal((await token(authReqId)).body.error, "access_denied");
  });
});
