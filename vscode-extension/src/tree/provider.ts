/**
 * The Stratus explorer: [server →] organization → project → function → Draft, Versions,
 * Environments (traffic, release state), Test events, Triggers. A server level shows only
 * when several servers are signed in. Errors become a node carrying the API's message
 * (never an empty, silent tree).
 */
import * as vscode from "vscode";
import type { StratusClient } from "../api/client";
import { errorMessage } from "../api/errors";
import { ACTIVE_RELEASE_STATES } from "../api/types";
import type { ServerInfo } from "../auth/servers";
import { draftUri, versionUri } from "../fs/uris";
import { GROUP_LABELS, type GroupKind, type Node, releaseLabel, trafficLabel } from "./nodes";

export interface ServerSource {
  list(): ServerInfo[];
  client(id: string): Promise<StratusClient>;
}

const GROUPS: GroupKind[] = ["draft", "versions", "environments", "testEvents", "triggers"];

export class StratusTreeProvider implements vscode.TreeDataProvider<Node> {
  private readonly changed = new vscode.EventEmitter<Node | undefined | void>();
  readonly onDidChangeTreeData = this.changed.event;

  constructor(private readonly servers: ServerSource) {}

  refresh(node?: Node): void {
    this.changed.fire(node);
  }

  async getChildren(node?: Node): Promise<Node[]> {
    try {
      return await this.children(node);
    } catch (error) {
      return [{ kind: "message", text: errorMessage(error), error: true }];
    }
  }

  private async children(node?: Node): Promise<Node[]> {
    if (!node) {
      const servers = this.servers.list();
      if (servers.length === 0) return []; // the view's welcome content offers "Sign In"
      if (servers.length > 1) return servers.map((server) => ({ kind: "server", server }));
      return this.orgs(servers[0].id);
    }
    switch (node.kind) {
      case "server":
        return this.orgs(node.server.id);
      case "org": {
        const client = await this.servers.client(node.serverId);
        const projects = await client.projects(node.org.slug);
        return empty(
          projects.filter((p) => p.org === node.org.slug).map((project) => ({ kind: "project", serverId: node.serverId, project })),
          "No projects",
        );
      }
      case "project": {
        const client = await this.servers.client(node.serverId);
        const functions = await client.functions(node.project.id);
        return empty(
          functions.map((fn) => ({ kind: "function", serverId: node.serverId, fn })),
          "No functions",
        );
      }
      case "function":
        return GROUPS.map((group) => ({ kind: "group", serverId: node.serverId, fn: node.fn, group }));
      case "group":
        return this.group(node.serverId, node);
      case "version": {
        const client = await this.servers.client(node.serverId);
        const files = await client.versionFiles(node.fn.id, node.version.number);
        return files.map((file) => ({ kind: "versionFile", serverId: node.serverId, fn: node.fn, version: node.version.number, file }));
      }
      default:
        return [];
    }
  }

  private async orgs(serverId: string): Promise<Node[]> {
    const client = await this.servers.client(serverId);
    const orgs = await client.orgs();
    return empty(
      orgs.map((org) => ({ kind: "org", serverId, org })),
      "No organizations",
    );
  }

  private async group(serverId: string, node: Extract<Node, { kind: "group" }>): Promise<Node[]> {
    const client = await this.servers.client(serverId);
    const fn = node.fn;
    switch (node.group) {
      case "draft": {
        const tree = await client.draft(fn.id);
        return empty(
          tree.files.map((file) => ({ kind: "draftFile", serverId, fn, file })),
          "No files",
        );
      }
      case "versions": {
        const [versions, bindings] = await Promise.all([client.versions(fn.id), client.bindings(fn.id)]);
        return empty(
          versions
            .sort((a, b) => b.number - a.number)
            .map((version) => ({
              kind: "version",
              serverId,
              fn,
              version,
              serving: bindings.filter((b) => b.traffic.some((t) => t.version === version.number && t.weight > 0)).map((b) => b.environment),
            })),
          "No versions: publish the draft",
        );
      }
      case "environments": {
        const [project, bindings, releases] = await Promise.all([
          client.project(fn.project),
          client.bindings(fn.id),
          client.releases(fn.id),
        ]);
        return project.environments.map((env) => ({
          kind: "environment",
          serverId,
          fn,
          name: env.name,
          binding: bindings.find((b) => b.environment === env.name),
          release: releases.find((r) => r.environment === env.name && ACTIVE_RELEASE_STATES.includes(r.state)),
        }));
      }
      case "testEvents":
        return empty(
          (await client.testEvents(fn.id)).map((event) => ({ kind: "testEvent", serverId, fn, event })),
          "No test events",
        );
      case "triggers":
        return empty(
          (await client.triggers(fn.id)).map((trigger) => ({ kind: "trigger", serverId, fn, trigger })),
          "No triggers",
        );
    }
  }

  getTreeItem(node: Node): vscode.TreeItem {
    const C = vscode.TreeItemCollapsibleState;
    const item = (label: string, state: vscode.TreeItemCollapsibleState, context: string, icon?: string) => {
      const t = new vscode.TreeItem(label, state);
      t.contextValue = context;
      if (icon) t.iconPath = new vscode.ThemeIcon(icon);
      return t;
    };
    switch (node.kind) {
      case "server": {
        const t = item(node.server.url, C.Expanded, "server", "server");
        t.description = node.server.username;
        t.id = `server:${node.server.id}`;
        return t;
      }
      case "org": {
        const t = item(node.org.name, C.Collapsed, "org", "organization");
        t.description = node.org.role;
        t.id = `${node.serverId}/org:${node.org.slug}`;
        return t;
      }
      case "project": {
        const t = item(node.project.name, C.Collapsed, "project", "project");
        t.description = node.project.slug;
        t.id = `${node.serverId}/project:${node.project.id}`;
        return t;
      }
      case "function": {
        const t = item(node.fn.name, C.Collapsed, "function", "symbol-function");
        t.description = node.fn.runtime;
        t.tooltip = `${node.fn.org} · ${node.fn.runtime} · ${node.fn.handler}`;
        t.id = `${node.serverId}/fn:${node.fn.id}`;
        return t;
      }
      case "group": {
        const icons: Record<GroupKind, string> = {
          draft: "edit",
          versions: "versions",
          environments: "server-environment",
          testEvents: "beaker",
          triggers: "watch",
        };
        const t = item(GROUP_LABELS[node.group], C.Collapsed, `group-${node.group}`, icons[node.group]);
        t.id = `${node.serverId}/fn:${node.fn.id}/${node.group}`;
        return t;
      }
      case "draftFile": {
        const uri = draftUri(node.serverId, node.fn.id, node.file.path);
        const t = item(node.file.path, C.None, "draftFile");
        t.resourceUri = uri;
        t.command = { command: "vscode.open", title: "Open", arguments: [uri] };
        return t;
      }
      case "version": {
        const t = item(`v${node.version.number}`, C.Collapsed, "version", "tag");
        const serving = node.serving.length ? ` · serving in ${node.serving.join(", ")}` : "";
        t.description = `${node.version.message || ""}${serving}`.trim();
        t.tooltip = `v${node.version.number} by ${node.version.author ?? "?"} at ${node.version.created_at}`;
        return t;
      }
      case "versionFile": {
        const uri = versionUri(node.serverId, node.fn.id, node.version, node.file.path);
        const t = item(node.file.path, C.None, "versionFile");
        t.resourceUri = uri;
        t.command = { command: "vscode.open", title: "Open", arguments: [uri] };
        return t;
      }
      case "environment": {
        const context = node.release ? `environment-release-${node.release.state}` : "environment";
        const t = item(node.name, C.None, context, node.release ? "rocket" : "server-environment");
        t.description = [trafficLabel(node.binding), releaseLabel(node.release)].filter(Boolean).join(" · ");
        t.tooltip = node.binding ? `${node.binding.url}\n${node.binding.status}: ${node.binding.status_message}` : "not deployed";
        return t;
      }
      case "testEvent": {
        const t = item(node.event.name, C.None, "testEvent", "json");
        t.description = node.event.shared ? "shared" : "mine";
        t.tooltip = JSON.stringify(node.event.body, null, 2);
        return t;
      }
      case "trigger": {
        const t = item(node.trigger.name || node.trigger.expression, C.None, "trigger", "watch");
        t.description = `${node.trigger.expression} · ${node.trigger.environment} · ${node.trigger.status}`;
        return t;
      }
      case "message":
        return item(node.text, C.None, "message", node.error ? "error" : "info");
    }
  }
}

function empty(nodes: Node[], text: string): Node[] {
  return nodes.length ? nodes : [{ kind: "message", text }];
}
