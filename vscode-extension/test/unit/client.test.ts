import "../stub/register";
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { StratusClient } from "../../src/api/client";
import { ApiError, ServerUnreachableError } from "../../src/api/errors";
import { FakeStratus, TOKEN } from "../support/fakeStratus";

describe("StratusClient", () => {
  let api: FakeStratus;
  before(async () => {
    api = await new FakeStratus().start();
  });
  after(async () => api.stop());

  it("sends the Bearer token and reads paginated lists", async () => {
    const client = new StratusClient({ baseUrl: `${api.url}/`, token: TOKEN });
    const orgs = await client.orgs();
    assert.deepEqual(orgs, [{ slug: "demo", name: "Demo Inc.", role: "owner" }]);
    assert.equal(api.requests.at(-1)?.headers.authorization, `Bearer ${TOKEN}`);
  });

  it("follows `next` across pages", async () => {
    api.extra = [
      ["GET", /^\/api\/v1\/functions\/42\/test-events\/$/, () => ({ status: 200, body: { count: 2, next: `${api.url}/api/v1/functions/42/test-events/?page=2`, previous: null, results: [{ id: 1 }] } })],
      ["GET", /^\/api\/v1\/functions\/42\/test-events\/\?page=2$/, () => ({ status: 200, body: { count: 2, next: null, previous: null, results: [{ id: 2 }] } })],
    ];
    try {
      const client = new StratusClient({ baseUrl: api.url, token: TOKEN });
      assert.deepEqual((await client.testEvents(42)).map((e) => e.id), [1, 2]);
    } finally {
      api.extra = [];
    }
  });

  it("turns the error envelope into an ApiError carrying its message, code and fields", async () => {
    const client = new StratusClient({ baseUrl: api.url, token: TOKEN });
    const error = await client.deploy(42, "qa", 1).catch((e) => e);
    assert.ok(error instanceof ApiError);
    assert.equal(error.status, 400);
    assert.equal(error.code, "invalid");
    assert.equal(error.message, "environment: No environment 'qa' in project 'shop'.");
    assert.deepEqual(error.fields, { environment: ["No environment 'qa'."] });
  });

  it("names the status when the body is not the envelope (a proxy's page)", async () => {
    api.extra = [["GET", /^\/api\/v1\/me\/$/, () => ({ status: 502, raw: "<html>Bad gateway</html>" })]];
    try {
      const client = new StratusClient({ baseUrl: api.url, token: TOKEN });
      const error = await client.me().catch((e) => e);
      assert.ok(error instanceof ApiError);
      assert.equal(error.message, "The server answered 502 Bad Gateway.");
    } finally {
      api.extra = [];
    }
  });

  it("a wrong token gets the server's message", async () => {
    const client = new StratusClient({ baseUrl: api.url, token: "stt_wrong" });
    await assert.rejects(client.me(), { name: "ApiError", status: 401, message: "Invalid or revoked token." });
  });

  it("a stale If-Match is a 409 with the stale_write message", async () => {
    const client = new StratusClient({ baseUrl: api.url, token: TOKEN });
    const error = await client.draftFileWrite(42, "main.py", new TextEncoder().encode("x"), { ifMatch: "0".repeat(64) }).catch((e) => e);
    assert.ok(error instanceof ApiError);
    assert.equal(error.status, 409);
    assert.equal(error.code, "stale_write");
    assert.match(error.message, /changed since you read it/);
    assert.equal(api.requests.at(-1)?.headers["if-match"], `"${"0".repeat(64)}"`);
  });

  it("an unreachable server is reported once per outage", async () => {
    const down = await new FakeStratus().start();
    const port = down.port;
    await down.stop();
    const reports: ServerUnreachableError[] = [];
    let back = 0;
    const client = new StratusClient({
      baseUrl: `http://127.0.0.1:${port}`,
      token: TOKEN,
      onUnreachable: (e) => reports.push(e),
      onReachable: () => back++,
    });
    await assert.rejects(client.orgs(), ServerUnreachableError);
    await assert.rejects(client.projects(), ServerUnreachableError);
    await assert.rejects(client.me(), ServerUnreachableError);
    assert.equal(reports.length, 1);
    assert.equal(reports[0].message, `Cannot reach the Stratus server at http://127.0.0.1:${port}.`);

    const up = await new FakeStratus().start(port);
    try {
      await client.me();
      assert.equal(back, 1);
    } finally {
      await up.stop();
    }
    await assert.rejects(client.me(), ServerUnreachableError);
    assert.equal(reports.length, 2, "a new outage after a success is reported again");
  });
});
