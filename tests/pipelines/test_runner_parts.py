"""Parts of the runner on their own: the registry of running steps' process groups
(step_processes.py) and the shape of the runner (a run reads as its four phases)."""

from __future__ import annotations

import inspect
import subprocess
from pathlib import Path

from apps.pipelines import runner
from apps.pipelines.runner import run as runner_run
from apps.pipelines.step_processes import StepProcessGroups
from tests.pipelines.test_runs import _pgroup_alive, _wait


def test_the_registry_kills_a_registered_steps_whole_group_and_nothing_else() -> None:
    steps = StepProcessGroups()
    proc = subprocess.Popen(["sh", "-c", "sleep 30 & sleep 30"], start_new_session=True)  # noqa: S607
    try:
        _wait(lambda: len(_pgroup_alive(proc.pid)) >= 2)  # sh and its two sleeps
        assert steps.kill(7) is False  # nothing registered: nothing killed
        assert len(_pgroup_alive(proc.pid)) >= 2

        steps.add(7, proc.pid)
        assert steps.pgid(7) == proc.pid and steps.pgid(8) is None
        assert steps.kill(7) is True
        proc.wait(5)
        _wait(lambda: _pgroup_alive(proc.pid) == [])
        steps.discard(7)
        assert steps.pgid(7) is None and steps.kill(7) is False
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_run_reads_as_its_four_phases() -> None:
    """The entry points and the phases' sequence fit on a screen; no module of the runner
    grows back into the one it was split from."""
    for function in (runner.run_execute, runner.run_resume, runner_run._four_phases, runner_run._after_checkout):
        assert len(inspect.getsource(function).splitlines()) <= 20, function.__name__
    package_dir = Path(runner.__file__).parent
    sizes = {path.name: len(path.read_text().splitlines()) for path in package_dir.glob("*.py")}
    assert max(sizes.values()) < 400, sizes
