// Every page in headless Chromium, at desktop and phone size (issue 17): a screenshot of each in
// test-artifacts/pages-*.png and axe-core run in the page (no serious or critical violation).
// Also: a note that disagrees with the action shows the action as the headline and a warning; an
// expired request cannot be acted on; an approval made with the keyboard alone; /verify checks a
// real bundle in the browser with the network off (WebAssembly verifier) and refuses it with one
// statement field changed; /log checks every inclusion proof in the browser.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { STEP_MS, VIEWPORTS, ask as askAs, axeViolations, enrol, launch, signIn } from "../lib/browser.mjs";
import { Server } from "../lib/server.mjs";

const CLIENT = { id: "pages-agent", secret: "pages-secret-0123456789" };
const APPROVER = "appr-carol";
const EVIL = [
  { type: "payment_initiation", instructedAmount: { currency: "EUR", amount: "4200.00" }, creditorName: "Evil Corp" },
];
const DEPLOY = [{ type: "deploy", service: "billing", environment: "production", version: "2026.12.1" }];

describe("every page, at desktop and phone size, with axe-core", { timeout: 240_000 }, () => {
  let server;
  let b;
  let page;
  let enrolmentLink;
  const checked = [];

  const ask = (note, details, expiry) => askAs(server, CLIENT, APPROVER, note, details, expiry);

  async function evidence(authReqId) {
    const r = await fetch(`${server.url}/v1/evidence/${encodeURIComponent(authReqId)}`, {
      headers: { authorization: "Basic " + Buffer.from(`${CLIENT.id}:${CLIENT.secret}`).toString("base64") },
    });
    assert.equal(r.status, 200);
    return r.text();
  }

  /** Screenshots and axe at both sizes, for the page as it stands now. */
  async function check(name) {
    for (const [size, viewport] of Object.entries(VIEWPORTS)) {
      await page.setViewportSize(viewport);
      await b.shot("pages", `${name}-${size}`);
      const bad = await axeViolations(page);
      assert.deepEqual(bad, [], `${name} at ${size}: accessibility violations`);
    }
    await page.setViewportSize(VIEWPORTS.phone);
    checked.push(name);
  }

  async function open(pathname, kind) {
    await page.goto(`${server.publicUrl}${pathname}`);
    await page.locator(`body[data-page="${kind}"]`).waitFor();
  }

  /** Opens the request page of the inbox item whose text holds `text`. */
  async function fromInbox(text) {
    await open("/approve", "inbox");
    await page.locator("#inbox a", { hasText: text }).click();
    await page.locator('body[data-page="request"]').waitFor();
    await page.locator("#hash-check.ok").waitFor();
  }

  before(async () => {
    // Short expiries allowed, for the expired request.
    server = await Server.start({ host: "localhost", extraArgs: ["--min-expiry", "2"] });
    await server.addClient(CLIENT.id, CLIENT.secret);
    enrolmentLink = await server.addApprover(APPROVER, "carol@example.com", "Carol Example");
    b = await launch(server);
    page = b.page;
  }, { timeout: 60_000 });

  after(async () => {
    await b?.close();
    await server?.stop();
    console.log(`pages checked at ${Object.keys(VIEWPORTS).join(" and ")}: ${checked.join(", ")}`);
  }, { timeout: 30_000 });

  test("the public pages: landing, sign-in, enrolment, errors", async () => {
    await open("/", "landing");
    assert.match(await page.locator("h1").textContent(), /Countersign/);
    for (const href of ["/approve", "/verify", "/log"]) {
      assert.ok(await page.locator(`main a[href="${href}"]`).count(), `the landing page links to ${href}`);
    }
    assert.equal((await page.request.get(`${server.publicUrl}/favicon.svg`)).status(), 200);
    await check("landing");
    await open("/approve", "signin");
    await check("signin");
    await open(new URL(enrolmentLink).pathname, "enrol");
    await check("enrol");
    await enrol(b, enrolmentLink);
    await check("enrolled");
    const gone = await page.goto(enrolmentLink);
    assert.equal(gone.status(), 410);
    await check("enrol-link-used");
    await signIn(b, server);
  });

  test("a note that disagrees with the action: the action is the headline, with a warning", async () => {
    await ask("Pay 1.00 EUR to ACME", EVIL);
    await ask("Deploy billing 2026.12.1 to production", DEPLOY);
    await open("/approve", "inbox");
    const item = page.locator("#inbox li", { hasText: "Evil Corp" });
    assert.equal((await item.locator(".headline").textContent()).trim(), "Pay 4200.00 EUR to Evil Corp");
    assert.match(await item.locator(".note-line").textContent(), /Agent's note: “Pay 1\.00 EUR to ACME”/);
    assert.match(await item.textContent(), /note disagrees with the action/);
    await check("inbox");

    await fromInbox("Evil Corp");
    assert.equal((await page.locator("h1").textContent()).trim(), "Pay 4200.00 EUR to Evil Corp");
    assert.equal(await page.title(), "Pay 4200.00 EUR to Evil Corp · Countersign");
    const warning = page.locator(".note .warning");
    assert.ok(await warning.isVisible(), "the warning is shown");
    const w = await warning.textContent();
    assert.ok(w.includes("“1.00”") && w.includes("“ACME”"), w);
    // The action comes before the note on the page.
    const order = await page.evaluate(() => {
      const a = document.getElementById("action-h").getBoundingClientRect().top;
      const n = document.getElementById("note-h").getBoundingClientRect().top;
      return a < n;
    });
    assert.ok(order, "the action is above the agent's note");
    assert.match(await page.locator("#hash-check").textContent(), /recomputed the SHA-256 .* equals the server's hash/);
    await check("request-mismatch");
    await page.locator("#deny").click();
    await page.locator("#receipt.denied h2", { hasText: "Denied" }).waitFor({ timeout: STEP_MS });
    await check("receipt-denied");
    assert.equal(await page.locator(".actions").count(), 0, "no buttons after the decision");
    await page.reload();
    await page.locator(".receipt.denied").waitFor();
    assert.equal(await page.locator("#approve, #deny, [data-expires]:not(body)").count(), 0);
    await check("request-denied");

    // Look-alike text ("АCME" with a Cyrillic А) is marked as an error, not shown as text.
    await ask("Pay 3.00 EUR to ACME", [
      { type: "payment_initiation", instructedAmount: { currency: "EUR", amount: "3.00" }, creditorName: "\u0410CME" },
    ]);
    await fromInbox("Pay 3.00 EUR");
    assert.match(await page.locator("main").textContent(), /Look closely:/);
    assert.match(await page.locator(".action dd", { hasText: "CME" }).first().textContent(), /mixes writing systems/);
    await check("request-lookalike");
    await page.locator("#deny").click();
    await page.locator("#receipt.denied").waitFor({ timeout: STEP_MS });

    // The generic renderer: type first, names humanised, the exact name beside each.
    await fromInbox("Deploy");
    assert.equal((await page.locator("h1").textContent()).trim(), "Deploy: environment production, service billing, version 2026.12.1");
    assert.equal(await page.locator(".note .warning").count(), 0, "a note that agrees with the action has no warning");
    assert.match(await page.locator(".action dl").textContent(), /Environment\s*production/);
    await check("request-generic");
  });

  test("keyboard only: Tab to the request, Enter, Tab to Approve, Enter", async () => {
    // The request arrives in the open inbox (server-sent events) some seconds after the page
    // loaded: its countdown still starts from the request's own expiry (300 s).
    await open("/approve", "inbox");
    await new Promise((r) => setTimeout(r, 2500));
    await ask("Pay 12.50 EUR to Bakery", [
      { type: "payment_initiation", instructedAmount: { currency: "EUR", amount: "12.50" }, creditorName: "Bakery", creditorAccount: { iban: "DE89370400440532013000" } },
    ]);
    const left = await page.locator("#inbox li", { hasText: "Bakery" }).locator(".left").textContent();
    const [, min, sec] = left.match(/(\d+) min (\d+) s left/) || [];
    assert.ok(min !== undefined && Number(min) * 60 + Number(sec) <= 300, `countdown: ${left}`);
    await page.reload();
    await page.locator('body[data-page="inbox"]').waitFor();
    const focusOn = async (predicate, what) => {
      for (let i = 0; i < 60; i++) {
        await page.keyboard.press("Tab");
        if (await page.evaluate(predicate)) return;
      }
      throw new Error(`Tab never reached ${what}`);
    };
    await page.locator("#inbox a", { hasText: "Bakery" }).waitFor();
    await focusOn(() => document.activeElement?.closest("#inbox a")?.textContent.includes("Bakery"), "the request");
    await page.keyboard.press("Enter");
    await page.locator('body[data-page="request"]').waitFor();
    await page.locator("#hash-check.ok").waitFor();
    assert.equal((await page.locator("h1").textContent()).trim(), "Pay 12.50 EUR to Bakery (DE89 3704 0044 0532 0130 00)");
    await check("request-payment");
    await focusOn(() => document.activeElement?.id === "approve", "the Approve button");
    await page.keyboard.press("Enter");
    await page.locator("#receipt.approved h2", { hasText: "Approved" }).waitFor({ timeout: STEP_MS }).catch(async (e) => {
      throw new Error(`keyboard approval not recorded; status line: ${await b.statusText()} (${e.message})`);
    });
    assert.equal(await page.evaluate(() => document.activeElement?.id), "receipt", "focus moves to the receipt");
    await check("receipt-approved");
    await page.reload();
    await page.locator(".receipt.approved").waitFor();
    await check("request-approved");
  });

  test("an expired request cannot be acted on", async () => {
    const id = await ask("Pay 5.00 EUR to Quick Shop", [
      { type: "payment_initiation", instructedAmount: { currency: "EUR", amount: "5.00" }, creditorName: "Quick Shop" },
    ], "4");
    await fromInbox("Quick Shop");
    assert.ok(await page.locator("#approve").isVisible());
    // The open page runs out of time: the buttons go, the state says so.
    await page.locator(".receipt.expired").waitFor({ timeout: 10_000 });
    assert.equal(await page.locator("#approve, #deny").count(), 0);
    assert.equal((await page.locator("#state").textContent()).trim(), "Expired");
    await page.reload();
    await page.locator(".receipt.expired").waitFor();
    assert.equal(await page.locator("#approve, #deny, [data-expires]:not(body)").count(), 0, "no buttons, no countdown");
    await check("request-expired");
    // Nor through the API: the page's own decide call is refused.
    const answer = await page.evaluate(async () => {
      const csrf = document.querySelector('meta[name="csrf-token"]').content;
      const r = await fetch(`/v1/requests/${document.body.dataset.request}/decide/start`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-csrf-token": csrf },
        body: JSON.stringify({ decision: "approve" }),
      });
      return { status: r.status, body: await r.json() };
    });
    assert.equal(answer.status, 410, JSON.stringify(answer));
    assert.equal(answer.body.error, "expired");
    const tok = await server.clientPost("/token", CLIENT.id, CLIENT.secret, {
      grant_type: "urn:openid:params:grant-type:ciba",
      auth_req_id: id,
    });
    assert.equal(tok.body.error, "expired_token");
  });

  test("history, and a request that is not there", async () => {
    await open("/approve/history", "history");
    assert.equal(await page.locator(".history li").count(), 3, "one approval and two denials");
    assert.equal(await page.locator(".history .badge.approved").count(), 1);
    assert.equal(await page.locator(".history .badge.denied").count(), 2);
    // The evidence is a file download.
    const [download] = await Promise.all([
      page.waitForEvent("download"),
      page.locator(".history .download a").first().click(),
    ]);
    assert.match(download.suggestedFilename(), /^countersign-evidence-.*\.json$/);
    await check("history");
    const r = await page.goto(`${server.publicUrl}/approve/requests/req_doesnotexist`);
    assert.equal(r.status(), 404);
    assert.ok(await page.locator('main a[href="/approve"]').count(), "a way back");
    await check("error-not-found");
  });

  test("/verify checks a real bundle in the browser with the network off", async () => {
    const approved = await ask("Pay 7.00 EUR to Corner Shop", [
      { type: "payment_initiation", instructedAmount: { currency: "EUR", amount: "7.00" }, creditorName: "Corner Shop" },
    ]);
    await fromInbox("Corner Shop");
    await page.locator("#approve").click();
    await page.locator("#receipt.approved").waitFor({ timeout: STEP_MS });
    const bundle = await evidence(approved);

    await open("/verify", "verify");
    await page.locator('body[data-verifier="ready"]').waitFor({ timeout: STEP_MS }).catch(async (e) => {
      throw new Error(`the WebAssembly verifier did not load: ${await page.locator("#verifier-state").textContent()} (${e.message})`);
    });
    assert.equal(await page.locator("#log-key").inputValue(), await server.vkey(), "the server's key is pre-filled");
    assert.equal(await page.locator("#rp-id").inputValue(), "localhost", "the server's RP ID is pre-filled (pinned)");
    await check("verify");
    await b.context.setOffline(true);
    try {
      await page.locator("#bundle").fill(bundle);
      await page.locator("#verify").click();
      await page.locator("#result .receipt.approved").waitFor();
      assert.match(await page.locator("#result h2").textContent(), /Verified: approved/);
      assert.match(await page.locator("#result").textContent(), /Covered by no signature: .*parties/);
      await check("verify-approved");

      const changed = JSON.parse(bundle);
      changed.statement.binding_message = "Pay 7.00 EUR to Corner Shop.";
      await page.locator("#bundle").fill(JSON.stringify(changed));
      await page.locator("#verify").click();
      await page.locator("#result .receipt.invalid").waitFor();
      assert.match(await page.locator("#result h2").textContent(), /Not verified/);
      await check("verify-refused");

      // Pinned to another relying party: refused; the bundle's own accepted only when ticked,
      // and then said.
      await page.locator("#bundle").fill(bundle);
      await page.locator("#rp-id").fill("evil.example");
      await page.locator("#verify").click();
      await page.locator("#result .receipt.invalid").waitFor();
      await page.locator("#trust-bundle-rp").check();
      await page.locator("#verify").click();
      await page.locator("#result .receipt.approved").waitFor();
      assert.match(await page.locator("#result").textContent(), /Relying party not pinned/);
      await page.locator("#trust-bundle-rp").uncheck();
      await page.locator("#rp-id").fill("localhost");

      // The right bundle against another log's key is refused too.
      await page.locator("#bundle").fill(bundle);
      await page.locator("#log-key").fill("other.example/log+01234567+AeRqmX3Z6t7Zc0fP9+2QO8Zl0yE3E3SiuCzD6lC6o6Nt");
      await page.locator("#verify").click();
      await page.locator("#result .receipt.invalid").waitFor();
    } finally {
      await b.context.setOffline(false);
    }
  });

  test("/log shows the checkpoint and entries, each proof checked in the browser", async () => {
    await open("/log", "log");
    await page.locator("#cp-sig.ok").waitFor({ timeout: STEP_MS }).catch(async (e) => {
      throw new Error(`checkpoint not verified: ${await page.locator("#cp-sig").textContent()} (${e.message})`);
    });
    const rows = page.locator("tr[data-index]");
    const n = await rows.count();
    assert.ok(n >= 5, `entries shown: ${n}`); // the enrolment and four decisions
    await page.locator("td.proof.ok").nth(n - 1).waitFor();
    assert.equal(await page.locator("td.proof.ok").count(), n, "every inclusion proof checks");
    assert.equal(await page.locator("td.proof.error").count(), 0);
    assert.ok(await page.locator("td", { hasText: "Decision" }).count());
    await check("log");
  });
});
