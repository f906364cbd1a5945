// The report.html of a real export (written by the Rust test log-server/cli/tests/it/export.rs
// into $COUNTERSIGN_EXPORT_ARCHIVES, as scripts/test.sh runs it) in headless Chromium: it loads
// nothing from anywhere, runs no script, shows its totals, passes axe-core, and prints. A
// screenshot and the printed PDF are kept in test-artifacts/.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, readFile } from "node:fs/promises";
import path from "node:path";
import { describe, it } from "node:test";
import { pathToFileURL } from "node:url";

import { chromium } from "playwright-core";

import { CHROMIUM, VIEWPORTS, axeViolations } from "../lib/browser.mjs";
import { ARTIFACTS_DIR } from "../lib/server.mjs";

const ARCHIVES = process.env.COUNTERSIGN_EXPORT_ARCHIVES;

describe("an export's report.html in headless Chromium", { timeout: 120_000 }, () => {
  it("is self-contained, accessible, shows its totals and prints", async (t) => {
    if (!ARCHIVES) {
      t.skip("COUNTERSIGN_EXPORT_ARCHIVES is not set: scripts/test.sh sets it and writes the archives first");
      return;
    }
    const report = path.join(ARCHIVES, "remote", "report.html");
    assert.ok(existsSync(report), `${report} is missing: the Rust export test did not write it`);
    const html = await readFile(report, "utf8");
    const totals = JSON.parse(html.match(/<script type="application\/json" id="countersign-totals">([^<]*)<\/script>/)[1]);

    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
    });
    try {
      const context = await browser.newContext({ viewport: VIEWPORTS.desktop, javaScriptEnabled: true });
      const page = await context.newPage();
      const requested = [];
      await context.route("**/*", (route) => {
        const url = route.request().url();
        if (url.startsWith("file:")) return route.continue();
        requested.push(url);
        return route.abort();
      });
      const errors = [];
      page.on("pageerror", (e) => errors.push(String(e)));
      await page.goto(pathToFileURL(report).href);
      assert.deepEqual(requested, [], "the report loads nothing over the network");
      assert.deepEqual(errors, []);

      // What a reader sees agrees with the machine-readable totals.
      const decisions = totals.decisions_approved + totals.decisions_denied;
      const cell = async (label) =>
        Number(await page.locator(`table.totals tr:has(th:text-is("${label}")) td`).innerText());
      assert.equal(await cell("Decisions"), decisions);
      assert.equal(await cell("Approved"), totals.decisions_approved);
      assert.equal(await cell("Denied"), totals.decisions_denied);
      assert.equal(await cell("Requests expired undecided"), totals.requests_expired);
      assert.ok(decisions > 0, "the export test made decisions");
      assert.equal(await page.locator("svg").count() >= 2, true, "the charts render as inline SVG");
      const denials = await page.locator("h2", { hasText: "Denials" }).innerText();
      assert.match(denials, new RegExp(`\\(${totals.decisions_denied}\\)`));
      assert.match(await page.locator("pre").innerText(), /countersign-verify export/);

      const bad = await axeViolations(page);
      assert.deepEqual(bad, [], bad.join("\n"));

      await mkdir(ARTIFACTS_DIR, { recursive: true });
      await page.screenshot({ path: path.join(ARTIFACTS_DIR, "export-report.png"), fullPage: true });
      const pdf = await page.pdf({ path: path.join(ARTIFACTS_DIR, "export-report.pdf"), format: "A4" });
      assert.ok(pdf.length > 10_000, `the printed report has ${pdf.length} bytes`);

      await page.setViewportSize(VIEWPORTS.phone);
      await page.screenshot({ path: path.join(ARTIFACTS_DIR, "export-report-phone.png"), fullPage: true });
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 1, `the report is ${overflow}px wider than a phone`);
    } finally {
      await browser.close();
    }
  });
});
