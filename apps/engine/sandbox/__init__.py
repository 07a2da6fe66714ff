"""Start function instances as confined OS processes, fast.

Both runtimes are forked by a pre-started *zygote* (``runtime/stratus_bootstrap/zygote.py``):
Python instances keep running the bootstrap the zygote already imported, Node instances
``exec`` ``node --max-old-space-size=<memory_mb> runtime/node/bootstrap.js`` once confined.
Either way the instance speaks the frame protocol (``runtime/stratus_bootstrap/protocol.py``)
on a socketpair whose other end is ``SpawnedInstance.sock``; the supervisor reads
``ready``/``init_error`` itself.

Identity (when the engine runs as root: ``Spawner.sandboxing``)
----------------------------------------------------------------
Each function runs as a uid of its own *per environment*: ``uid_base + spec.identity``
(``apps.functions.models.ExecutionIdentity``), with no supplementary groups, so the dev
instances of a function cannot read, trace or signal its prod instances (whose environment
holds prod's secrets), nor those of any other function. Instances are not dumpable (Python by
``prctl``, Node by running an execute-only copy of the node binary, see ``node.NodeLauncher``):
``/proc/<pid>/environ``, ``mem`` and ptrace are closed even to processes of the same uid.
``no_new_privs``: no setuid binary gives anything back.

Confinement, per instance (``runtime/stratus_bootstrap/confine.py``, in the forked child)
-----------------------------------------------------------------------------------------
* A private mount namespace: the whole tree read-only; ``/proc`` with ``hidepid=invisible``
  (an instance sees its identity's processes only); ``/tmp`` (``spec.tmp_mb``, the function's
  ``ephemeral_storage_mb``) and ``/dev/shm`` (``spec.shm_mb``) as private tmpfs owned by the
  uid, ENOSPC past their size, gone with the instance; ``/run`` empty (no host Unix socket:
  PostgreSQL's, MariaDB's, D-Bus's). HOME and TMPDIR are ``/tmp``.
* A cgroup (``apps/core/isolation/cgroups.py``, v1 or v2, under ``stratus-instances``):
  ``memory`` = memory_mb + the tmpfs sizes + ``CGROUP_OVERHEAD_MB`` (shared memory and tmpfs
  pages count), ``pids`` = ``spec.max_processes``; removed (and every member killed, even one
  that left the process group) when the instance exits. OOM kills are read from it.
* The egress firewall (``apps/core/isolation/firewall.py``): the uid reaches the public
  internet, and no loopback, private or link-local address and no address of this host,
  except what its environment's ``egress_allow`` opens (never the console's own endpoints).

Which of these the host allows is probed at ``start()`` (``Spawner.isolation``), logged, and
shown by ``/readyz``; what is missing is named there. Without root: every instance runs as
the console's uid, not dumpable and without new privileges, and nothing else applies.

Limits, per instance
--------------------
* ``RLIMIT_AS`` (Python only): ``memory_mb`` plus what the interpreter had mapped at fork time,
  the two log-pump thread stacks and a small slack (measured in the child, see the zygote). Too
  big an allocation is a ``MemoryError`` in the handler (an ``error`` frame) or, if the runtime
  itself cannot allocate, a crash. Node gets ``--max-old-space-size`` instead (V8 reserves huge
  address ranges, so no RLIMIT_AS), and dies with "JavaScript heap out of memory"; memory
  outside its heap (Buffers) is caught by the cgroup.
* ``RLIMIT_NOFILE`` = ``max_open_files``; ``RLIMIT_CORE`` = 0.
* ``RLIMIT_NPROC`` = ``identity_max_processes``, counted per real uid, so for all instances of
  the identity together (each also has its cgroup's ``pids.max``). Without root there is one
  uid for everything, so the limit is "tasks this uid has now + max_processes".
* Each instance runs in its own session/process group; ``kill()`` SIGKILLs the group, and the
  group is SIGKILLed once more when the instance exits (``apps/core/isolation/hardening.py``,
  the same rules as pipeline steps: data-directory protection, process-group kill).

Code, directories and environment
---------------------------------
Each function gets a private, root-owned, read-only copy of its code and a home under
``sandbox_dir`` (``files.py``); ``data_dir`` around it is closed to the function uids. Paths
an instance needs that lie under ``/tmp`` (a test data directory) are bound back into its
namespace. The environment of an instance is built from scratch: PATH, HOME, TMPDIR, LANG
(and PYTHONUNBUFFERED/PYTHONDONTWRITEBYTECODE for Python), the function's own variables, the
``STRATUS_*`` runtime variables (which the bootstrap replaces by ``AWS_LAMBDA_*``).

Modules
-------
* ``spawner.py``: ``Spawner`` (the probe of this host, ``Isolation``; per instance: uid,
  cgroup, confinement, environment, limits) — the only entry point the engine uses.
* ``zygote.py``: the zygote client (start, restart, spawn requests, exits, the Python fallback).
* ``node.py``: the Node side (the execute-only node copy and its argv).
* ``files.py``: filesystem preparation (the sandbox directory, code copies, homes).
* ``instances.py``: ``InstanceSpec``, ``SpawnedInstance``, ``ExitInfo`` (and out-of-memory).
"""

from apps.engine.sandbox.instances import INSTANCE_PATH, ExitInfo, InstanceSpec, SpawnedInstance
from apps.engine.sandbox.node import NODE_BOOTSTRAP, NODE_CACHE_DIR
from apps.engine.sandbox.spawner import CGROUP_OVERHEAD_MB, CGROUP_PARENT, Isolation, Spawner

__all__ = [
    "CGROUP_OVERHEAD_MB",
    "CGROUP_PARENT",
    "INSTANCE_PATH",
    "NODE_BOOTSTRAP",
    "NODE_CACHE_DIR",
    "ExitInfo",
    "InstanceSpec",
    "Isolation",
    "SpawnedInstance",
    "Spawner",
]
