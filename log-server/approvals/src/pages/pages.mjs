// The verify and log pages: every check runs in this browser, in the verifier crate compiled to
// WebAssembly (the same code as countersign-verify). Nothing is sent to the server; once the
// page and the verifier are loaded, the checks work with the network off.
import { load } from "/assets/countersign-verifier.mjs";

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

function row(dl, term, value) {
  dl.append(el("dt", {}, term), el("dd", {}, value));
}

function localTime(secs) {
  const d = new Date(Number(secs) * 1000);
  return el("time", { datetime: d.toISOString().replace(/\.\d{3}Z$/, "Z") }, d.toLocaleString() + " (" + d.toISOString().replace(/\.\d{3}Z$/, "Z") + ")");
}

const state = document.getElementById("verifier-state");
let verifier = null;
try {
  verifier = await load("/assets/countersign-verifier.wasm");
  state.textContent = "Verifier loaded: the checks below run in this browser.";
  state.className = "ok";
} catch (e) {
  state.textContent =
    "The in-browser verifier could not be loaded (" + e.message + "). Verify with the command-line tool instead: countersign-verify bundle FILE --log-key KEY --rp-id RP_ID.";
  state.className = "error";
}

function showVerdict(v) {
  const out = document.getElementById("result");
  out.replaceChildren();
  if (!v.valid) {
    out.append(
      el("div", { class: "receipt invalid", role: "alert" },
        el("h2", {}, "✗ Not verified"),
        el("p", {}, (v.check ? "Failed check: " + v.check + ". " : "") + (v.error || "the bundle does not verify")),
        el("p", {}, "Do not rely on this bundle: it is not proof of any decision.")));
    return;
  }
  const approved = v.decision === "approve";
  const box = el("div", { class: "receipt " + (approved ? "approved" : "denied") },
    el("h2", {}, approved ? "✓ Verified: approved" : "✓ Verified: denied"),
    el("p", {}, approved
      ? "The approver's passkey signed an approval of exactly this statement, and the decision is in the log under the key given."
      : "The approver's passkey signed a refusal of this statement: the action was NOT approved."));
  if (v.rp_pinned === false) {
    box.append(el("p", { class: "warning" },
      el("strong", {}, "Relying party not pinned: "),
      "accepted the one the bundle names (" + (v.rp_id || "?") + "). Check that it is yours."));
  }
  const dl = el("dl", { class: "meta" });
  const st = v.statement || {};
  if (st.client_id) row(dl, "Client (agent)", el("code", {}, st.client_id));
  if (st.approver_id) row(dl, "Approver", el("code", {}, st.approver_id));
  if (st.authorization_details !== undefined) row(dl, "The action", el("pre", {}, JSON.stringify(st.authorization_details, null, 2)));
  if (st.binding_message !== undefined) row(dl, "Agent's note (signed, written by the agent)", "“" + st.binding_message + "”");
  if (st.requested_at) row(dl, "Requested", localTime(st.requested_at));
  if (v.decision_index !== undefined) row(dl, "Log index of the decision", String(v.decision_index));
  if (v.tree_size !== undefined) row(dl, "Checkpoint tree size", String(v.tree_size));
  if (v.log_origin) row(dl, "Log", el("code", {}, v.log_origin));
  if (v.statement_hash) row(dl, "Statement hash", el("code", {}, v.statement_hash));
  box.append(dl);
  const unsigned = v.unsigned || [];
  if (unsigned.length) {
    box.append(el("p", { class: "warning" },
      el("strong", {}, "Covered by no signature: "),
      unsigned.join(", ") + ". The bundle carries them for convenience (names, e-mail addresses, origins); they prove nothing."));
  }
  out.append(box);
}

function setupVerify() {
  const form = document.getElementById("verify-form");
  const text = document.getElementById("bundle");
  const file = document.getElementById("bundle-file");
  file.addEventListener("change", async () => {
    if (file.files && file.files[0]) text.value = await file.files[0].text();
  });
  text.addEventListener("dragover", (e) => {
    e.preventDefault();
    text.classList.add("dropping");
  });
  text.addEventListener("dragleave", () => text.classList.remove("dropping"));
  text.addEventListener("drop", async (e) => {
    e.preventDefault();
    text.classList.remove("dropping");
    const f = e.dataTransfer && e.dataTransfer.files && e.dataTransfer.files[0];
    if (f) text.value = await f.text();
  });
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    if (!verifier) {
      showVerdict({ valid: false, error: "the in-browser verifier is not loaded; use countersign-verify" });
      return;
    }
    const bundle = text.value.trim();
    const logKey = document.getElementById("log-key").value.trim();
    if (!bundle) {
      showVerdict({ valid: false, error: "paste or choose an evidence bundle first" });
      text.focus();
      return;
    }
    if (!logKey) {
      showVerdict({ valid: false, error: "give the log key the bundle must be checked against" });
      return;
    }
    // Pinned to the relying party in the form (this server's own by default), as
    // `countersign-verify bundle --rp-id`; the bundle's own only when the box says so.
    const rpId = document.getElementById("rp-id").value.trim();
    const trust = document.getElementById("trust-bundle-rp").checked;
    if (!rpId && !trust) {
      showVerdict({ valid: false, error: "give the relying party ID the approval must be for, or tick the box to accept the bundle's own" });
      return;
    }
    showVerdict(verifier.verifyBundle(trust ? { bundle, log_key: logKey, trust_bundle_rp: true } : { bundle, log_key: logKey, rp_id: rpId }));
    document.getElementById("result").focus();
  });
}

function checkLog() {
  const data = JSON.parse(document.getElementById("log-data").textContent);
  const sig = document.getElementById("cp-sig");
  const cosig = document.getElementById("cp-cosig");
  const cells = new Map();
  for (const tr of document.querySelectorAll("tr[data-index]")) cells.set(tr.dataset.index, tr.querySelector(".proof"));
  if (!verifier) {
    sig.textContent = "not checked (the verifier did not load)";
    return;
  }
  const cp = verifier.verifyCheckpoint({ note: data.checkpoint, log_key: data.log_key });
  if (!cp.valid) {
    sig.textContent = "✗ does not verify: " + (cp.error || "bad signature");
    sig.className = "error";
    for (const c of cells.values()) c.textContent = "not checked (checkpoint invalid)";
    return;
  }
  sig.textContent = "✓ verified in your browser (size " + cp.size + ")";
  sig.className = "ok";
  const cos = (cp.signatures || []).filter((s) => s.role !== "log");
  if (cos.length) {
    cosig.replaceChildren(
      ...cos.map((c) =>
        el("div", {},
          c.name + " (key id " + c.key_id + ")" +
          (c.timestamp ? ", " + new Date(c.timestamp * 1000).toISOString().replace(/\.\d{3}Z$/, "Z") : "") +
          (c.verified ? ": ✓ verified" : ": not checked (key not known to this page)"))),
    );
  }
  for (const e of data.entries) {
    const cell = cells.get(String(e.index));
    const r = verifier.verifyInclusion({ entry: e.entry, index: e.index, size: cp.size, root: cp.root, proof: e.proof });
    if (r.valid && r.leaf_hash === e.leaf_hash) {
      cell.textContent = "✓ included";
      cell.className = "proof ok";
    } else {
      cell.textContent = "✗ " + (r.error || "leaf hash differs");
      cell.className = "proof error";
    }
  }
}

const page = document.body.dataset.page;
if (page === "verify") setupVerify();
if (page === "log") checkLog();
document.body.dataset.verifier = verifier ? "ready" : "failed";
