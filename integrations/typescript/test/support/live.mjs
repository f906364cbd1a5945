// A live countersign server for the SDK tests, built on the interop helpers: a fresh server on
// 127.0.0.1, an approver enrolled with a software passkey and signed in, and CIBA clients in
// poll, ping and push mode (ping/push clients get a notification endpoint on 127.0.0.1:0).

import assert from "node:assert/strict";
import http from "node:http";

import { ApiApprover } from "../../../../interop/lib/approver.mjs";
import { freePort, Server } from "../../../../interop/lib/server.mjs";
import { CountersignClient } from "../../dist/index.js";

export const APPROVER = "appr-alice";
export const APPROVER_EMAIL = "alice@example.com";

let counter = 0;
/** A binding message unique in this process, so tests never pick each other's request. */
export function uniqueMessage(prefix) {
  counter += 1;
  return `${prefix} #${process.pid}-${counter}`;
}

export class Live {
  static async start({ extraArgs = [] } = {}) {
    // Requests may expire after 2 s, so expiry is tested in seconds.
    const server = await Server.start({ extraArgs: ["--min-expiry", "2", ...extraArgs] });
    const live = new Live(server);
    try {
      live.approver = await ApiApprover.create(server);
      const link = await server.addApprover(APPROVER, APPROVER_EMAIL, "Alice Example");
      await live.approver.enrol(link);
      await live.approver.signIn();
    } catch (e) {
      await live.stop();
      throw e;
    }
    return live;
  }

  constructor(server) {
    this.server = server;
    this.listeners = [];
  }

  /** A registered client and a CountersignClient for it; ping/push get a live notification endpoint. */
  async client(id, mode = "poll", clientOptions = {}) {
    const secret = `${id}-secret-0123456789abcdef`;
    const extra = ["--mode", mode];
    let client;
    if (mode !== "poll") {
      let handler = (_req, res) => {
        res.writeHead(503);
        res.end();
      };
      const listener = http.createServer((req, res) => handler(req, res));
      await new Promise((resolve) => listener.listen(0, "127.0.0.1", resolve));
      this.listeners.push(listener);
      const endpoint = `http://127.0.0.1:${listener.address().port}/countersign/notify`;
      extra.push("--notification-endpoint", endpoint);
      await this.server.addClient(id, secret, extra);
      client = new CountersignClient({ url: this.server.url, clientId: id, clientSecret: secret, deliveryMode: mode, ...clientOptions });
      const h = client.notificationHandler();
      handler = h;
      return { client, secret, endpoint };
    }
    await this.server.addClient(id, secret, extra);
    client = new CountersignClient({ url: this.server.url, clientId: id, clientSecret: secret, ...clientOptions });
    return { client, secret };
  }

  /** Waits for the request with `bindingMessage` in Alice's inbox and decides it with her passkey. */
  async decide(bindingMessage, decision) {
    const req = await this.approver.waitForRequest(bindingMessage, 15_000);
    const { finish } = await this.approver.decide(req.request_id, decision);
    assert.equal(finish.status, 201, `decide/finish: ${JSON.stringify(finish.body)}`);
    return { req, finish: finish.body };
  }

  async stop() {
    for (const l of this.listeners) {
      l.closeAllConnections?.();
      await new Promise((r) => l.close(r));
    }
    await this.server.stop();
  }
}

/** An URL where nothing listens (a port bound, read and released). */
export async function deadUrl() {
  return `http://127.0.0.1:${await freePort()}`;
}

/** Flips one bit of the signature of a compact JWS. */
export function tamperSignature(jwt) {
  const [h, p, s] = jwt.split(".");
  const sig = Buffer.from(s, "base64url");
  sig[5] ^= 0x01;
  return `${h}.${p}.${sig.toString("base64url")}`;
}

/** Rewrites the payload of a compact JWS (signature kept), e.g. to raise an approved amount. */
export function tamperPayload(jwt, edit) {
  const [h, p, s] = jwt.split(".");
  const claims = JSON.parse(Buffer.from(p, "base64url"));
  edit(claims);
  return `${h}.${Buffer.from(JSON.stringify(claims)).toString("base64url")}.${s}`;
}
