"""The process groups of the steps running in this process, one per run at most.

The runner owns the registry: it registers a step's process group for as long as the step
runs (``running_steps.add(run_id, pgid)`` once it started, ``discard(run_id)`` once it was
killed). ``run_cancel`` asks it to kill a run's step (``running_steps.kill(run_id)``): a
cancel made in this process ends the step at once; one made in another process sets the
flag the runner polls (``run_services.cancel_requested``). It sits below both so that
run_services need not import the runner, which imports run_services.
"""

from __future__ import annotations

import threading

from apps.pipelines.step_sandbox import kill_group


class StepProcessGroups:
    """run id → the process group of the step it is running in this process."""

    def __init__(self) -> None:
        self._pgids: dict[int, int] = {}
        self._lock = threading.Lock()  # worker threads register while a cancel looks up

    def add(self, run_id: int, pgid: int) -> None:
        with self._lock:
            self._pgids[run_id] = pgid

    def discard(self, run_id: int) -> None:
        with self._lock:
            self._pgids.pop(run_id, None)

    def pgid(self, run_id: int) -> int | None:
        with self._lock:
            return self._pgids.get(run_id)

    def kill(self, run_id: int) -> bool:
        """Kill the run's step if it runs in this process; whether one did."""
        pgid = self.pgid(run_id)
        if not pgid:
            return False
        kill_group(pgid)
        return True


running_steps = StepProcessGroups()
