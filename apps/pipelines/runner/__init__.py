"""The pipeline runner: executing a run, with live logs, on a worker.

``run_execute`` claims a queued run and takes it through its four phases, each a module:
checkout.py (the commit, its pipeline and target), steps.py (each step confined, see
step_sandbox.py), packaging.py (a version per function), deploy.py (directly, by a release,
or parked for an approval). ``run_resume`` takes an approved run on from where it waited;
``runs_reap_stale`` fails runs whose worker vanished. Around them: claim.py (the run's
state as the worker moves it), heartbeat.py, logs.py (batched, masked, published lines),
environment.py (the target environment and its secrets), reaper.py.

The lane (project, branch or tag) runs one run at a time (run_services.py); the runner starts
the lane's next run whenever it lets go of one.
"""

from apps.pipelines.runner.logs import LogWriter, line_json
from apps.pipelines.runner.reaper import runs_reap_stale
from apps.pipelines.runner.run import run_execute, run_resume

__all__ = ["LogWriter", "line_json", "run_execute", "run_resume", "runs_reap_stale"]
