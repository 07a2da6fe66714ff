"""The Node spawner's part: Node instances are forked by the same zygote as Python ones, which
then ``exec``s ``node --max-old-space-size=<memory_mb> runtime/node/bootstrap.js`` once
confined. The node binary run is an execute-only copy (mode 0111): an execve of a binary its
user cannot read leaves the process non-dumpable, as the Python instances are, so no process
of the same uid can read a Node instance's memory or environ or ptrace it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from pathlib import Path

from apps.core.isolation import RUNTIME_DIR, path_problem
from apps.engine.sandbox.instances import InstanceSpec

NODE_BOOTSTRAP = RUNTIME_DIR / "node" / "bootstrap.js"
NODE_CACHE_DIR = Path("/var/cache/stratus")  # execute-only copies of node (see NodeLauncher)


class NodeLauncher:
    """The argv the zygote execs for a Node instance."""

    def __init__(self, *, node: str, sandbox_dir: Path, sandboxing: bool) -> None:
        self.node = node
        self.sandbox_dir = sandbox_dir
        self.sandboxing = sandboxing
        self._node_exec: str | None = None
        self._node_lock: asyncio.Lock | None = None

    def start(self) -> None:
        self._node_lock = asyncio.Lock()

    async def argv(self, spec: InstanceSpec) -> list[str]:
        return [await self.executable(), f"--max-old-space-size={int(spec.memory_mb)}", str(NODE_BOOTSTRAP)]

    async def executable(self) -> str:
        """The execute-only copy of node (made on first use)."""
        if self._node_exec is not None:
            return self._node_exec
        assert self._node_lock is not None
        async with self._node_lock:
            if self._node_exec is None:
                self._node_exec = await asyncio.to_thread(self._copy_node)
        return self._node_exec

    def _copy_node(self) -> str:
        source = shutil.which(self.node) or self.node
        if not os.path.isfile(source):
            raise RuntimeError(f"node is not installed ({self.node!r} not found)")
        if self.sandboxing:
            problem = path_problem(NODE_BOOTSTRAP.parent, readable=True)
            if problem is not None:
                raise RuntimeError(f"{NODE_BOOTSTRAP} is not readable by sandboxed functions: {problem} lacks o+rx")
        st = os.stat(source)
        # Shared by every engine of the host (one copy of ~100 MB per node binary), root's
        # when root: no function uid may replace it.
        bin_dir = NODE_CACHE_DIR if self.sandboxing else self.sandbox_dir / "bin"
        bin_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(bin_dir, 0o711)  # noqa: S103 - traversable by function uids, not listable
        dest = bin_dir / f"node-{st.st_size}-{int(st.st_mtime)}"
        if not dest.exists():
            tmp = bin_dir / f".tmp-node-{uuid.uuid4().hex}"
            shutil.copyfile(source, tmp)
            os.chmod(tmp, 0o111)  # noqa: S103 - execute-only: see the module docstring
            os.rename(tmp, dest)
        return str(dest)
