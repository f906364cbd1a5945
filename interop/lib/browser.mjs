// Debian's headless Chromium driven by playwright-core, with the DevTools WebAuthn virtual
// authenticator as the approver's passkey, on a server started by lib/server.mjs. Shared by the
// browser tests (kept out of test/ so that `node --test` does not run it as a test file).

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";

import { chromium } from "playwright-core";

import { ARTIFACTS_DIR } from "./server.mjs";

export const CHROMIUM = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
/** Longest wait for one UI step. */
export const STEP_MS = 15_000;
export const CIBA_GRANT = "urn:openid:params:grant-type:ciba";
/** The two sizes every page is checked at. */
export const VIEWPORTS = {
  desktop: { width: 1280, height: 800 },
  phone: { width: 390, height: 844 },
};

/**
 * A browser on `server`: a fresh profile, one page, a virtual authenticator (CTAP2, internal,
 * user verification). `viewport` defaults to the phone size.
 */
export async function launch(server, { viewport = VIEWPORTS.phone } = {}) {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} not found: run scripts/setup-interop.sh (installs Debian's chromium) or set CHROMIUM_BIN`);
  }
  const profileDir = await mkdtemp(path.join(os.tmpdir(), "countersign-chromium-"));
  // launchPersistentContext takes the fresh profile as --user-data-dir.
  const context = await chromium.launchPersistentContext(profileDir, {
    executablePath: CHROMIUM,
    headless: true,
    timeout: 30_000,
    viewport,
    acceptDownloads: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      // localhost is 127.0.0.1 only: no attempt at ::1 or any other address.
      "--host-resolver-rules=MAP localhost 127.0.0.1",
    ],
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(STEP_MS);
  const cdp = await context.newCDPSession(page);
  await cdp.send("WebAuthn.enable", { enableUI: false });
  const { authenticatorId } = await cdp.send("WebAuthn.addVirtualAuthenticator", {
    options: {
      protocol: "ctap2",
      transport: "internal",
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
      automaticPresenceSimulation: true,
    },
  });
  const shots = [];
  return {
    context,
    page,
    cdp,
    authenticatorId,
    shots,
    /** Saves a full-page screenshot as test-artifacts/<prefix>-<name>.png. */
    async shot(prefix, name) {
      await mkdir(ARTIFACTS_DIR, { recursive: true });
      const file = path.join(ARTIFACTS_DIR, `${prefix}-${name}.png`);
      await page.screenshot({ path: file, fullPage: true });
      shots.push(file);
      return file;
    },
    /** The status line the pages write their messages and errors to. */
    statusText: () => page.locator("#status").textContent(),
    async close() {
      await context.close().catch(() => {});
      await rm(profileDir, { recursive: true, force: true });
      if (shots.length) console.log(`screenshots: ${shots.join(", ")}`);
    },
  };
}

/** Enrols a passkey from `link` by pressing the page's button; waits for the confirmation. */
export async function enrol(b, link) {
  await b.page.goto(link);
  await b.page.locator('body[data-page="enrol"]').waitFor();
  await b.page.locator("#enrol").click();
  await b.page.locator("h1", { hasText: "Passkey enrolled" }).waitFor({ timeout: STEP_MS }).catch(async (e) => {
    throw new Error(`enrolment did not finish; status line: ${await b.statusText()} (${e.message})`);
  });
}

/** Signs in on the inbox page with the enrolled passkey. */
export async function signIn(b, server) {
  await b.page.goto(`${server.publicUrl}/approve`);
  await b.page.locator('body[data-page="signin"]').waitFor();
  await b.page.locator("#signin").click();
  await b.page.locator('body[data-page="inbox"]').waitFor({ timeout: STEP_MS }).catch(async (e) => {
    throw new Error(`sign-in did not reach the inbox; status line: ${await b.statusText()} (${e.message})`);
  });
}

/** Asks `approver` through `/bc-authorize`; returns the auth_req_id. */
export async function ask(server, client, approver, bindingMessage, details, expiry = "300") {
  const r = await server.clientPost("/bc-authorize", client.id, client.secret, {
    scope: "openid payments",
    login_hint: approver,
    binding_message: bindingMessage,
    authorization_details: JSON.stringify(details),
    requested_expiry: expiry,
  });
  assert.equal(r.status, 200, `bc-authorize: ${JSON.stringify(r.body)}`);
  return r.body.auth_req_id;
}

let axeSource;
/**
 * Runs axe-core in the page (evaluated over the DevTools protocol, so the page's own CSP, which
 * allows no injected script, stays as it is) and returns the serious and critical violations.
 */
export async function axeViolations(page) {
  if (!axeSource) {
    const require = createRequire(import.meta.url);
    axeSource = await readFile(require.resolve("axe-core/axe.min.js"), "utf8");
  }
  await page.evaluate(axeSource);
  const result = await page.evaluate(() =>
    // eslint-disable-next-line no-undef
    axe.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"] } }),
  );
  return result.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.map((n) => n.target.join(" ")).join("; ")}`);
}
