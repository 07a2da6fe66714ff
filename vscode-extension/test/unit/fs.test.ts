import "../stub/register";
import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import * as vscode from "vscode";
import { StratusClient } from "../../src/api/client";
import { type Conflict, StratusFileSystemProvider } from "../../src/fs/provider";
import { draftUri, versionUri } from "../../src/fs/uris";
import { FakeStratus, TOKEN, sha } from "../support/fakeStratus";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

describe("StratusFileSystemProvider", () => {
  let api: FakeStratus;
  let fs: StratusFileSystemProvider;
  let conflicts: Conflict[];
  before(async () => {
    api = await new FakeStratus().start();
  });
  after(async () => api.stop());
  beforeEach(() => {
    conflicts = [];
    const client = new StratusClient({ baseUrl: api.url, token: TOKEN });
    fs = new StratusFileSystemProvider({ client: async () => client }, (c) => void conflicts.push(c));
  });

  it("lists and reads the draft, remembering the ETag", async () => {
    api.otherWriter("main.py", "print('a')\n");
    const root = draftUri("srv", 42);
    assert.deepEqual(await fs.readDirectory(root), [["main.py", vscode.FileType.File]]);
    const uri = draftUri("srv", 42, "main.py");
    assert.equal(dec(await fs.readFile(uri)), "print('a')\n");
    assert.equal(fs.etags.get(uri.toString()), sha("print('a')\n"));
    const stat = await fs.stat(uri);
    assert.equal(stat.type, vscode.FileType.File);
    assert.equal(stat.permissions, undefined);
  });

  it("saves with If-Match and keeps the new ETag", async () => {
    api.otherWriter("main.py", "one\n");
    const uri = draftUri("srv", 42, "main.py");
    await fs.readFile(uri);
    await fs.writeFile(uri, enc("two\n"), { create: true, overwrite: true });
    const put = api.requests.filter((r) => r.method === "PUT").at(-1);
    assert.equal(put?.headers["if-match"], `"${sha("one\n")}"`);
    assert.equal(api.draft.get("main.py")?.content, "two\n");
    assert.equal(fs.etags.get(uri.toString()), sha("two\n"));
    assert.equal(conflicts.length, 0);
  });

  it("a save after someone else's fails with the 409's message, opens the conflict, and a second save overwrites", async () => {
    api.otherWriter("main.py", "mine-base\n");
    const uri = draftUri("srv", 42, "main.py");
    await fs.readFile(uri);
    api.otherWriter("main.py", "theirs\n");

    await assert.rejects(fs.writeFile(uri, enc("mine\n"), { create: true, overwrite: true }), (e: Error) => {
      assert.ok(e instanceof vscode.FileSystemError);
      assert.match(e.message, /changed since you read it/);
      return true;
    });
    assert.equal(api.draft.get("main.py")?.content, "theirs\n", "the other write was not overwritten");
    assert.equal(conflicts.length, 1);
    assert.equal(dec(conflicts[0].serverCopy), "theirs\n");
    assert.equal(conflicts[0].uri.toString(), uri.toString());

    await fs.writeFile(uri, enc("mine\n"), { create: true, overwrite: true });
    assert.equal(api.draft.get("main.py")?.content, "mine\n");
  });

  it("creates a new file with If-None-Match: *", async () => {
    const uri = draftUri("srv", 42, "lib/util.py");
    await fs.writeFile(uri, enc("x = 1\n"), { create: true, overwrite: false });
    const put = api.requests.filter((r) => r.method === "PUT").at(-1);
    assert.equal(put?.headers["if-none-match"], "*");
    assert.equal(put?.headers["if-match"], undefined);
    assert.deepEqual(
      (await fs.readDirectory(draftUri("srv", 42))).sort(),
      [
        ["lib", vscode.FileType.Directory],
        ["main.py", vscode.FileType.File],
      ],
    );
  });

  it("mounts versions read-only", async () => {
    const uri = versionUri("srv", 42, 1, "main.py");
    assert.equal(dec(await fs.readFile(uri)), "print('v0')\n");
    assert.equal((await fs.stat(uri)).permissions, vscode.FilePermission.Readonly);
    await assert.rejects(fs.writeFile(uri, enc("x"), { create: true, overwrite: true }), { code: "NoPermissions" });
    await assert.rejects(fs.delete(uri), { code: "NoPermissions" });
  });

  it("a missing file is FileNotFound", async () => {
    await assert.rejects(fs.stat(draftUri("srv", 42, "nope.py")), { code: "FileNotFound" });
    await assert.rejects(fs.readFile(draftUri("srv", 42, "nope.py")), { code: "FileNotFound" });
  });
});
