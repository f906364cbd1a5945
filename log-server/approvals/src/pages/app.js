// Countersign approval pages. Plain JavaScript, no build step.
"use strict";

const b64u = {
  enc(buf) {
    const b = new Uint8Array(buf);
    let s = "";
    for (const x of b) s += String.fromCharCode(x);
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  },
  dec(str) {
    const s = atob(str.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((str.length + 3) % 4));
    const b = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) b[i] = s.charCodeAt(i);
    return b;
  },
};

// RFC 8785 (JCS): object members sorted by UTF-16 code units (the default string order of
// Array.prototype.sort), numbers and strings as ECMAScript JSON.stringify writes them.
function jcs(v) {
  if (v === null || typeof v !== "object") return JSON.stringify(v);
  if (Array.isArray(v)) return "[" + v.map(jcs).join(",") + "]";
  return "{" + Object.keys(v).sort().map((k) => JSON.stringify(k) + ":" + jcs(v[k])).join(",") + "}";
}

async function sha256hex(text) {
  const d = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(d), (x) => x.toString(16).padStart(2, "0")).join("");
}

function say(text, isError) {
  const el = document.getElementById("status");
  el.textContent = text;
  el.className = isError ? "error" : "";
}

function csrf() {
  const m = document.querySelector('meta[name="csrf-token"]');
  return m ? m.content : "";
}

async function api(path, body) {
  const r = await fetch(path, {
    method: "POST",
    credentials: "same-origin",
    headers: { "content-type": "application/json", "x-csrf-token": csrf() },
    body: JSON.stringify(body || {}),
  });
  const text = await r.text();
  const data = text ? JSON.parse(text) : {};
  if (!r.ok) throw new Error(data.error_description || data.error || r.statusText);
  return data;
}

function requestOptions(pk) {
  const o = Object.assign({}, pk, { challenge: b64u.dec(pk.challenge) });
  if (pk.allowCredentials) {
    o.allowCredentials = pk.allowCredentials.map((c) => Object.assign({}, c, { id: b64u.dec(c.id) }));
  }
  return o;
}

function assertionJson(cred) {
  return {
    id: cred.id,
    rawId: b64u.enc(cred.rawId),
    type: cred.type,
    response: {
      authenticatorData: b64u.enc(cred.response.authenticatorData),
      clientDataJSON: b64u.enc(cred.response.clientDataJSON),
      signature: b64u.enc(cred.response.signature),
      userHandle: cred.response.userHandle ? b64u.enc(cred.response.userHandle) : null,
    },
  };
}

async function signIn() {
  try {
    say("Waiting for your passkey…");
    const start = await api("/v1/session/start");
    const cred = await navigator.credentials.get({ publicKey: requestOptions(start.publicKey) });
    await api("/v1/session/finish", { ceremony_id: start.ceremony_id, credential: assertionJson(cred) });
    location.reload();
  } catch (e) {
    say("Sign-in failed: " + explain(e), true);
  }
}

async function enrol() {
  const token = document.body.dataset.token;
  try {
    say("Waiting for your authenticator…");
    const start = await api("/v1/enrol/start", { token });
    const pk = start.publicKey;
    const opts = Object.assign({}, pk, {
      challenge: b64u.dec(pk.challenge),
      user: Object.assign({}, pk.user, { id: b64u.dec(pk.user.id) }),
      excludeCredentials: (pk.excludeCredentials || []).map((c) => Object.assign({}, c, { id: b64u.dec(c.id) })),
    });
    const cred = await navigator.credentials.create({ publicKey: opts });
    const done = await api("/v1/enrol/finish", {
      ceremony_id: start.ceremony_id,
      token,
      credential: {
        id: cred.id,
        rawId: b64u.enc(cred.rawId),
        type: cred.type,
        response: {
          attestationObject: b64u.enc(cred.response.attestationObject),
          clientDataJSON: b64u.enc(cred.response.clientDataJSON),
        },
      },
    });
    document.getElementById("main").innerHTML = "";
    const h = document.createElement("h1");
    h.textContent = "Passkey enrolled";
    const p = document.createElement("p");
    p.textContent = "Recorded in the log at index " + done.log_index + ". You can now sign in.";
    const a = document.createElement("a");
    a.href = "/approve";
    a.textContent = "Go to your inbox";
    document.getElementById("main").append(h, p, a);
    say("Enrolled.");
  } catch (e) {
    say("Enrolment failed: " + explain(e), true);
  }
}

// Times are sent as RFC 3339 UTC; show them in the reader's time zone, UTC on hover.
function localTimes(root) {
  for (const t of (root || document).querySelectorAll("time[datetime]")) {
    const d = new Date(t.getAttribute("datetime"));
    if (isNaN(d)) continue;
    t.title = t.getAttribute("datetime");
    t.textContent = d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
  }
}

// A pending request that runs out of time cannot be decided any more: say so, and take the
// buttons away.
function expireNow() {
  const actions = document.querySelector(".actions");
  if (actions) {
    const p = document.createElement("section");
    p.className = "receipt expired";
    const h = document.createElement("h2");
    h.textContent = "Expired";
    const t = document.createElement("p");
    t.textContent = "This request expired without a decision. It can no longer be approved or denied; the agent has to ask again.";
    p.append(h, t);
    actions.replaceWith(p);
  }
  const st = document.getElementById("state");
  if (st) {
    st.textContent = "Expired";
    st.className = "state expired";
  }
}

// The server's clock, from the data-now (Unix seconds) of the page last rendered by it.
let skew = 0;
function setServerNow(secs) {
  if (secs) skew = Number(secs) * 1000 - Date.now();
}

// Counts down every [data-expires] element; one timer, started again when new ones appear.
let timer = null;
function tickLeft() {
  const update = () => {
    const now = (Date.now() + skew) / 1000;
    let live = 0;
    for (const el of document.querySelectorAll("[data-expires]")) {
      if (el === document.body) continue;
      const left = Number(el.dataset.expires) - now;
      if (left > 0) {
        live++;
        const s = Math.ceil(left);
        el.textContent = Math.floor(s / 60) + " min " + (s % 60) + " s left";
      } else {
        el.textContent = "expired";
        delete el.dataset.expires;
      }
    }
    const exp = Number(document.body.dataset.expires || 0);
    if (document.body.dataset.page === "request" && exp) {
      if (now >= exp) {
        expireNow();
        delete document.body.dataset.expires;
      } else {
        live++;
      }
    }
    if (!live && timer) {
      clearInterval(timer);
      timer = null;
    }
  };
  update();
  if (!timer) timer = setInterval(update, 1000);
}

// The inbox is rendered by the server; a change re-reads it, so the list and the page's first
// load never differ.
async function refreshInbox() {
  const r = await fetch("/approve", { credentials: "same-origin" });
  if (!r.ok) return;
  const doc = new DOMParser().parseFromString(await r.text(), "text/html");
  const fresh = doc.getElementById("inbox");
  const ul = document.getElementById("inbox");
  if (!fresh || !ul) return;
  setServerNow(doc.body.dataset.now);
  ul.replaceChildren(...Array.from(fresh.childNodes, (n) => document.importNode(n, true)));
  localTimes(ul);
  tickLeft();
}

async function checkHash() {
  const el = document.getElementById("hash-check");
  const pre = document.getElementById("canonical");
  if (!el || !pre) return;
  try {
    const statement = JSON.parse(pre.textContent);
    const mine = await sha256hex(jcs(statement));
    const server = document.getElementById("server-hash").textContent;
    const short = mine.slice(0, 12) + "…";
    el.textContent =
      mine === server
        ? "✓ Your browser recomputed the SHA-256 of the statement shown here (RFC 8785 canonical JSON, decision “" +
          (el.dataset.decision || statement.decision) + "”) and it equals the server's hash " + short +
          ": the action above is what the passkey signs."
        : "✗ The statement shown here hashes to " + short + ", not to the server's hash: do not approve, and tell your operator.";
    el.className = mine === server ? "check ok" : "check error";
  } catch (e) {
    el.textContent = "Could not recompute the hash (" + e.message + "): do not approve.";
    el.className = "check error";
  }
}

async function decide(decision) {
  const id = document.body.dataset.request;
  for (const b of document.querySelectorAll(".actions button")) b.disabled = true;
  try {
    const start = await api("/v1/requests/" + encodeURIComponent(id) + "/decide/start", { decision });
    // Check what is about to be signed before signing it: the statement shown, with this
    // decision, hashed here, and the challenge = nonce || that hash.
    const shown = JSON.parse(document.getElementById("canonical").textContent);
    shown.decision = decision;
    const hash = await sha256hex(jcs(shown));
    if (hash !== start.statement_hash || jcs(shown) !== jcs(start.statement)) {
      throw new Error("the statement to sign differs from the one shown; nothing was signed");
    }
    const ch = b64u.dec(start.publicKey.challenge);
    const expect = start.nonce + hash;
    const got = Array.from(ch, (x) => x.toString(16).padStart(2, "0")).join("");
    if (got !== expect) throw new Error("the challenge does not cover this statement; nothing was signed");
    say("Waiting for your passkey…");
    const cred = await navigator.credentials.get({ publicKey: requestOptions(start.publicKey) });
    const done = await api("/v1/requests/" + encodeURIComponent(id) + "/decide/finish", {
      decision,
      credential: assertionJson(cred),
    });
    const rc = document.getElementById("receipt");
    rc.innerHTML = "";
    const approved = decision === "approve";
    // An approval short of the request's quorum: recorded, and the request waits for others.
    const waiting = approved && done.status === "pending";
    const h = document.createElement("h2");
    h.textContent = waiting ? "You approved" : approved ? "✓ Approved" : "✗ Denied";
    const p = document.createElement("p");
    p.textContent =
      (approved
        ? "You approved this action. Your signed approval is in the public log at index "
        : "You denied this action; the agent gets no token for it. Your signed refusal is in the public log at index ") +
      done.log_index + " (statement hash " + done.statement_hash.slice(0, 12) + "…)." +
      (waiting
        ? " " + done.approvals + " of " + done.quorum + " approvals: the request waits for the other approvers, and the agent gets nothing until then."
        : "");
    const a = document.createElement("a");
    a.href = "/approve/requests/" + encodeURIComponent(id) + "/evidence";
    a.download = "countersign-evidence-" + id + ".json";
    a.textContent = "Download the evidence bundle";
    const back = document.createElement("a");
    back.href = "/approve";
    back.textContent = "Back to your inbox";
    const links = document.createElement("p");
    links.append(a, " · ", back);
    rc.className = "receipt " + (approved ? "approved" : "denied");
    rc.setAttribute("tabindex", "-1");
    rc.append(h, p, links);
    document.querySelector(".actions").remove();
    const st = document.getElementById("state");
    if (st) {
      st.textContent = waiting ? "Waiting for the other approvers" : approved ? "Approved" : "Denied";
      st.className = "state " + (waiting ? "pending" : approved ? "approved" : "denied");
    }
    const q = document.getElementById("quorum");
    if (q && waiting) {
      q.dataset.have = String(done.approvals);
      q.querySelector("strong").textContent = done.approvals + " of " + done.quorum + " approvals";
    }
    delete document.body.dataset.expires;
    for (const el of document.querySelectorAll("[data-expires]")) delete el.dataset.expires;
    rc.focus();
    say(waiting ? "Approval recorded; waiting for the other approvers." : approved ? "Approved and recorded." : "Denied and recorded.");
  } catch (e) {
    for (const b of document.querySelectorAll(".actions button")) b.disabled = false;
    say("Nothing was recorded: " + explain(e), true);
  }
}

// What went wrong, and what to do next.
function explain(e) {
  if (e && e.name === "NotAllowedError") {
    return "the passkey prompt was cancelled or timed out. You can try again.";
  }
  if (e && e.name === "InvalidStateError") {
    return "this passkey cannot be used here. Try another passkey, or ask your operator for an enrolment link.";
  }
  if (e instanceof TypeError) {
    return "the server could not be reached. Check your connection and try again.";
  }
  return (e && e.message) || String(e);
}

document.addEventListener("DOMContentLoaded", () => {
  const pageKind = document.body.dataset.page;
  const on = (id, f) => {
    const el = document.getElementById(id);
    if (el) el.addEventListener("click", f);
  };
  const needsPasskeys = ["signin", "enrol", "request"].includes(pageKind);
  if (!window.PublicKeyCredential && needsPasskeys) {
    say("This browser does not support passkeys.", true);
  }
  on("signin", signIn);
  on("enrol", enrol);
  on("logout", async () => {
    await api("/v1/session/logout").catch(() => {});
    location.reload();
  });
  on("approve", () => decide("approve"));
  on("deny", () => decide("deny"));
  localTimes();
  setServerNow(document.body.dataset.now);
  tickLeft();
  if (pageKind === "inbox") {
    const es = new EventSource("/approve/events");
    es.addEventListener("changed", () => refreshInbox());
    // The server ends each stream after a while; catch up on whatever happened in between.
    es.addEventListener("open", () => refreshInbox());
  }
  if (pageKind === "request") checkHash();
});
