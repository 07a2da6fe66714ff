/** The one place commands are registered: id → handler, each wrapped so failures are shown. */
import * as vscode from "vscode";
import type { Ctx } from "../context";
import { abortRelease } from "./abortRelease";
import { compareWithVersion } from "./compareWithVersion";
import { copyInvokeUrl } from "./copyInvokeUrl";
import { createFunction } from "./createFunction";
import { deployFolder } from "./deployFolder";
import { deployToEnvironment } from "./deployToEnvironment";
import { reportError } from "./helpers";
import { invoke } from "./invoke";
import { openDraftFolder } from "./openDraftFolder";
import { openInConsole } from "./openInConsole";
import { pauseRelease } from "./pauseRelease";
import { promoteRelease } from "./promoteRelease";
import { publishVersion } from "./publishVersion";
import { refresh } from "./refresh";
import { resumeRelease } from "./resumeRelease";
import { rollback } from "./rollback";
import { selectEnvironment } from "./selectEnvironment";
import { signIn } from "./signIn";
import { signOut } from "./signOut";
import { startRelease } from "./startRelease";
import { stopTail, tailFilters, tailLogs, toggleTailPause } from "./tailLogs";

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- handlers take a tree node or a Uri
type Handler = (...args: any[]) => Promise<unknown>;

export const COMMANDS: Record<string, (ctx: Ctx) => Handler> = {
  "stratus.signIn": signIn,
  "stratus.signOut": signOut,
  "stratus.refresh": refresh,
  "stratus.createFunction": createFunction,
  "stratus.publishVersion": publishVersion,
  "stratus.deployToEnvironment": deployToEnvironment,
  "stratus.startRelease": startRelease,
  "stratus.promoteRelease": promoteRelease,
  "stratus.pauseRelease": pauseRelease,
  "stratus.resumeRelease": resumeRelease,
  "stratus.abortRelease": abortRelease,
  "stratus.rollback": rollback,
  "stratus.invoke": invoke,
  "stratus.deployFolder": deployFolder,
  "stratus.tailLogs": tailLogs,
  "stratus.tailPause": toggleTailPause,
  "stratus.tailFilters": tailFilters,
  "stratus.tailStop": stopTail,
  "stratus.openInConsole": openInConsole,
  "stratus.copyInvokeUrl": copyInvokeUrl,
  "stratus.compareWithVersion": compareWithVersion,
  "stratus.selectEnvironment": selectEnvironment,
  "stratus.openDraftFolder": openDraftFolder,
};

export function registerCommands(ctx: Ctx): vscode.Disposable[] {
  return Object.entries(COMMANDS).map(([id, make]) => {
    const handler = make(ctx);
    return vscode.commands.registerCommand(id, async (...args: unknown[]) => {
      try {
        return await handler(...args);
      } catch (error) {
        await reportError(error);
        return undefined;
      }
    });
  });
}
