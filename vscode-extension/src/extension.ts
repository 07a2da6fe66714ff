/**
 * Stratus for VS Code: the entry point of both bundles (desktop `main`, web `browser`).
 * Everything here runs in either host: fetch, no Node built-ins.
 */
import * as vscode from "vscode";
import { StratusClient, normalizeServerUrl } from "./api/client";
import { errorMessage } from "./api/errors";
import { AUTH_PROVIDER_ID, StratusAuthenticationProvider } from "./auth/provider";
import { type ServerInfo, ServerStore } from "./auth/servers";
import { registerCommands } from "./commands/register";
import type { Ctx } from "./context";
import { StratusFileSystemProvider } from "./fs/provider";
import { SCHEME, SERVER_COPY_SCHEME } from "./fs/uris";
import { LogTail } from "./logs/tail";
import { StratusTreeProvider } from "./tree/provider";

const ACTIVE_ENV_KEY = "stratus.activeEnvironment";

export async function activate(context: vscode.ExtensionContext): Promise<Ctx> {
  const store = new ServerStore(context.globalState, context.secrets, {
    // "Says so once": the client calls this on the first failure of an outage only.
    onUnreachable: (server, error) =>
      void vscode.window.showErrorMessage(`${error.message} Check the URL and that the console is running.`),
    onReachable: (server) => void vscode.window.setStatusBarMessage(`Stratus: ${server.url} is back`, 5000),
  });

  const signInFlow = async (): Promise<ServerInfo | undefined> => {
    const configured = vscode.workspace.getConfiguration("stratus").get<string>("serverUrl") || "";
    const url = await vscode.window.showInputBox({
      prompt: "Stratus server URL",
      value: configured || "http://127.0.0.1:8000",
      ignoreFocusOut: true,
      validateInput: (v) => {
        try {
          normalizeServerUrl(v);
          return undefined;
        } catch {
          return "Not a URL.";
        }
      },
    });
    if (!url) return undefined;
    const token = await vscode.window.showInputBox({
      prompt: `Personal API token for ${normalizeServerUrl(url)} (create one under Account → API tokens)`,
      password: true,
      ignoreFocusOut: true,
      placeHolder: "stt_…",
    });
    if (!token) return undefined;
    try {
      const server = await store.add(url, token.trim());
      void vscode.window.showInformationMessage(`Signed in to ${server.url} as ${server.username}.`);
      return server;
    } catch (error) {
      void vscode.window.showErrorMessage(`Sign-in to ${normalizeServerUrl(url)} failed: ${errorMessage(error)}`);
      return undefined;
    }
  };

  const auth = new StratusAuthenticationProvider(store, signInFlow);
  await auth.init();
  context.subscriptions.push(
    auth,
    vscode.authentication.registerAuthenticationProvider(AUTH_PROVIDER_ID, "Stratus", auth, { supportsMultipleAccounts: true }),
  );

  const tree = new StratusTreeProvider(store);
  const view = vscode.window.createTreeView("stratus.explorer", { treeDataProvider: tree, showCollapseAll: true });
  context.subscriptions.push(view, store.onDidChange(() => tree.refresh()));

  // The server's copy of a file whose save hit a 409, shown on the left of the diff.
  const serverCopies = new Map<string, string>();
  const copyChanged = new vscode.EventEmitter<vscode.Uri>();
  context.subscriptions.push(
    vscode.workspace.registerTextDocumentContentProvider(SERVER_COPY_SCHEME, {
      onDidChange: copyChanged.event,
      provideTextDocumentContent: (uri) => serverCopies.get(uri.toString()) ?? "",
    }),
  );
  const fs = new StratusFileSystemProvider(store, async ({ uri, serverCopy, message }) => {
    const left = uri.with({ scheme: SERVER_COPY_SCHEME, query: String(Date.now()) });
    serverCopies.set(left.toString(), new TextDecoder().decode(serverCopy));
    copyChanged.fire(left);
    void vscode.window.showWarningMessage(`${message} The diff shows the server's copy; save again to overwrite it with yours.`);
    await vscode.commands.executeCommand("vscode.diff", left, uri, `${uri.path.split("/").pop()} (server) ↔ yours`);
  });
  context.subscriptions.push(vscode.workspace.registerFileSystemProvider(SCHEME, fs, { isCaseSensitive: true }));

  const tail = new LogTail();
  const statusBar = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Left, 50);
  statusBar.command = "stratus.selectEnvironment";
  context.subscriptions.push(tail, statusBar);

  const ctx: Ctx = {
    extension: context,
    store,
    tree,
    fs,
    tail,
    statusBar,
    signIn: signInFlow,
    activeEnvironment: () =>
      context.workspaceState.get<string>(ACTIVE_ENV_KEY) ??
      vscode.workspace.getConfiguration("stratus").get<string>("defaultEnvironment") ??
      "dev",
    setActiveEnvironment: async (name) => {
      await context.workspaceState.update(ACTIVE_ENV_KEY, name);
      updateStatusBar();
    },
  };
  const updateStatusBar = () => {
    statusBar.text = `$(server-environment) Stratus: ${ctx.activeEnvironment()}`;
    statusBar.tooltip = "The environment Stratus invokes and deploys the current folder to (click to change)";
    if (store.list().length) statusBar.show();
    else statusBar.hide();
  };
  updateStatusBar();
  context.subscriptions.push(store.onDidChange(updateStatusBar), ...registerCommands(ctx));
  void vscode.commands.executeCommand("setContext", "stratus.signedIn", store.list().length > 0);
  context.subscriptions.push(
    store.onDidChange(() => void vscode.commands.executeCommand("setContext", "stratus.signedIn", store.list().length > 0)),
  );
  return ctx;
}

export function deactivate(): void {
  // Disposables in context.subscriptions stop the tail and close the channels.
}

export { StratusClient };
