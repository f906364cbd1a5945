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
    say("Sign-in failed: " + e.message, true);
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
    say("Enrolment failed: " + e.message, true);
  }
}

function tickLeft() {
  const skew = Number(document.body.dataset.now || 0) * 1000 - Date.now();
  const update = () => {
    const now = (Date.now() + skew) / 1000;
    for (const el of document.querySelectorAll("[data-expires]")) {
      if (el === document.body) continue;
      const left = Math.floor(Number(el.dataset.expires) - now);
      el.textContent = left > 0 ? Math.floor(left / 60) + " min " + (left % 60) + " s left" : "expired";
    }
  };
  update();
  setInterval(update, 1000);
}

async function refreshInbox() {
  const r = await fetch("/v1/inbox", { credentials: "same-origin" });
  if (!r.ok) return;
  const data = await r.json();
  const ul = document.getElementById("inbox");
  ul.innerHTML = "";
  for (const q of data.requests) {
    const li = document.createElement("li");
    const a = document.createElement("a");
    a.href = "/approve/requests/" + encodeURIComponent(q.request_id);
    const strong = document.createElement("strong");
    strong.textContent = q.binding_message;
    const from = document.createElement("span");
    from.textContent = "from " + q.client_id;
    const left = document.createElement("span");
    left.className = "left";
    left.dataset.expires = q.expires_at;
    a.append(strong, from, left);
    li.append(a);
    ul.append(li);
  }
  if (!data.requests.length) {
    const li = document.createElement("li");
    li.className = "empty";
    li.textContent = "Nothing waiting for you.";
    ul.append(li);
  }
}

async function checkHash() {
  const el = document.getElementById("hash-check");
  const pre = document.getElementById("canonical");
  if (!el || !pre) return;
  try {
    const statement = JSON.parse(pre.textContent);
    const mine = await sha256hex(jcs(statement));
    const server = document.getElementById("server-hash").textContent;
    el.textContent = mine === server ? "✓ Recomputed in your browser: matches." : "✗ Hash mismatch: do not approve.";
    el.className = mine === server ? "check ok" : "check error";
  } catch (e) {
    el.textContent = "Could not recompute the hash: " + e.message;
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
    const h = document.createElement("h2");
    h.textContent = decision === "approve" ? "Approved" : "Denied";
    const p = document.createElement("p");
    p.textContent = "Recorded in the log at index " + done.log_index + " (statement hash " + done.statement_hash + ").";
    const a = document.createElement("a");
    a.href = "/approve/requests/" + encodeURIComponent(id) + "/evidence";
    a.textContent = "Evidence bundle";
    rc.className = "receipt";
    rc.append(h, p, a);
    document.querySelector(".actions").remove();
    say("Done.");
  } catch (e) {
    for (const b of document.querySelectorAll(".actions button")) b.disabled = false;
    say("Not recorded: " + e.message, true);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const pageKind = document.body.dataset.page;
  const on = (id, f) => {
    const el = document.getElementById(id);
    if (el) el.addEventListener("click", f);
  };
  if (!window.PublicKeyCredential && pageKind !== "error") {
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
  tickLeft();
  if (pageKind === "inbox") {
    const es = new EventSource("/approve/events");
    es.addEventListener("changed", () => refreshInbox());
    // The server ends each stream after a while; catch up on whatever happened in between.
    es.addEventListener("open", () => refreshInbox());
  }
  if (pageKind === "request") checkHash();
});
