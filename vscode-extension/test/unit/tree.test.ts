import "../stub/register";
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import * as vscode from "vscode";
import { StratusClient } from "../../src/api/client";
import type { ServerInfo } from "../../src/auth/servers";
import type { Node } from "../../src/tree/nodes";
import { StratusTreeProvider } from "../../src/tree/provider";
import { FakeStratus, TOKEN } from "../support/fakeStratus";

const labels = (tree: StratusTreeProvider, nodes: Node[]) =>
  nodes.map((n) => {
    const item = tree.getTreeItem(n);
    return item.description ? `${item.label} — ${item.description}` : item.label;
  });

describe("StratusTreeProvider", () => {
  let api: FakeStratus;
  let servers: ServerInfo[];
  let tree: StratusTreeProvider;
  before(async () => {
    api = await new FakeStratus().start();
    servers = [{ id: "one", url: api.url, username: "alice" }];
    const client = new StratusClient({ baseUrl: api.url, token: TOKEN });
    tree = new StratusTreeProvider({ list: () => servers, client: async () => client });
  });
  after(async () => api.stop());

  it("org → project → function → the five groups", async () => {
    const orgs = await tree.getChildren();
    assert.deepEqual(labels(tree, orgs), ["Demo Inc. — owner"]);
    const projects = await tree.getChildren(orgs[0]);
    assert.deepEqual(labels(tree, projects), ["Shop — shop"]);
    const functions = await tree.getChildren(projects[0]);
    assert.deepEqual(labels(tree, functions), ["hello — python3.11"]);
    assert.equal(tree.getTreeItem(functions[0]).contextValue, "function");
    const groups = await tree.getChildren(functions[0]);
    assert.deepEqual(labels(tree, groups), ["Draft", "Versions", "Environments", "Test events", "Triggers"]);
  });

  it("a server level appears with several servers", async () => {
    servers = [
      { id: "one", url: api.url, username: "alice" },
      { id: "two", url: "http://other.example", username: "bob" },
    ];
    try {
      const roots = await tree.getChildren();
      assert.deepEqual(roots.map((n) => n.kind), ["server", "server"]);
      assert.deepEqual(labels(tree, await tree.getChildren(roots[0])), ["Demo Inc. — owner"]);
    } finally {
      servers = [{ id: "one", url: api.url, username: "alice" }];
    }
  });

  it("environments show traffic and the release in progress, with menus by state", async () => {
    const fn = { id: 42, org: "demo", project: 7, name: "hello", runtime: "python3.11", handler: "main.handler", kind: "event" };
    const envs = await tree.getChildren({ kind: "group", serverId: "one", fn, group: "environments" });
    assert.deepEqual(labels(tree, envs), [
      "dev — v1 90% · v2 10% · release v2 running 10% (step 1/3)",
      "prod — not deployed",
    ]);
    assert.deepEqual(envs.map((n) => tree.getTreeItem(n).contextValue), ["environment-release-running", "environment"]);
  });

  it("draft files open stratus: URIs; versions say where they serve; test events and triggers list", async () => {
    const fn = { id: 42, org: "demo", project: 7, name: "hello", runtime: "python3.11", handler: "main.handler", kind: "event" };
    const files = await tree.getChildren({ kind: "group", serverId: "one", fn, group: "draft" });
    const item = tree.getTreeItem(files[0]);
    assert.equal(item.label, "main.py");
    assert.equal(item.command?.command, "vscode.open");
    assert.equal(String(item.command?.arguments?.[0]), "stratus://one/42/draft/main.py");
    const versions = await tree.getChildren({ kind: "group", serverId: "one", fn, group: "versions" });
    assert.deepEqual(labels(tree, versions), ["v1 — v1 · serving in dev"]);
    const versionFiles = await tree.getChildren(versions[0]);
    assert.equal(String(tree.getTreeItem(versionFiles[0]).resourceUri), "stratus://one/42/v1/main.py");
    assert.deepEqual(labels(tree, await tree.getChildren({ kind: "group", serverId: "one", fn, group: "testEvents" })), ["simple — shared"]);
    assert.deepEqual(labels(tree, await tree.getChildren({ kind: "group", serverId: "one", fn, group: "triggers" })), ["No triggers"]);
  });

  it("an API error becomes a node with its message", async () => {
    const fn = { id: 999, org: "demo", project: 7, name: "gone", runtime: "python3.11", handler: "main.handler", kind: "event" };
    const nodes = await tree.getChildren({ kind: "group", serverId: "one", fn, group: "draft" });
    assert.deepEqual(nodes, [{ kind: "message", text: "No API route matches /api/v1/functions/999/draft/.", error: true }]);
    assert.equal((tree.getTreeItem(nodes[0]).iconPath as vscode.ThemeIcon).id, "error");
  });
});
