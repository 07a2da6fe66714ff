import type { Ctx } from "../context";
import type { Node } from "../tree/nodes";

/** Refresh the tree (a node's children, or everything). */
export function refresh(ctx: Ctx) {
  return async (node?: Node) => ctx.tree.refresh(node);
}
