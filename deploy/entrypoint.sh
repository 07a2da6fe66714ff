#!/bin/sh
# The console image's entrypoint: one subcommand per process kind (docs/DEPLOY.md).
#   web [--workers N]   the ASGI web process (STRATUS_ENGINE=remote: calls go to the supervisor)
#   worker              a Celery worker (pipelines, releases, deploy follow-ups)
#   beat                Celery beat, exactly one per installation (release sweep, refreshes)
#   scheduler           the schedules' 1 s loop (apps/triggers): one or more, claims make extras safe
#   supervisor          the local engine, one per host, sharing the data directory with web
#   migrate             migrations and collectstatic: once per upgrade, before the new web/worker
#   create-admin ARGS   manage.py create_admin (the first operator, org and token)
#   healthcheck [PATH]  GET PATH (/readyz) on this container's web port, as a probe would
#   manage ARGS         any manage.py command
set -eu
cd "${STRATUS_APP_DIR:-/app}"
PYTHON="${PYTHON:-python}"
cmd="${1:-web}"
[ "$#" -gt 0 ] && shift

case "$cmd" in
web)
    exec "$PYTHON" manage.py serve --host 0.0.0.0 --port "${PORT:-8000}" --workers "${STRATUS_WEB_WORKERS:-1}" "$@"
    ;;
worker)
    exec celery -A console worker -l "${STRATUS_CELERY_LOG_LEVEL:-info}" \
        --concurrency "${STRATUS_WORKER_CONCURRENCY:-4}" "$@"
    ;;
beat)
    # The schedule file lives in the data directory (CELERY_BEAT_SCHEDULE_FILENAME), not in /app.
    exec celery -A console beat -l "${STRATUS_CELERY_LOG_LEVEL:-info}" "$@"
    ;;
scheduler)
    exec "$PYTHON" manage.py run_scheduler "$@"
    ;;
supervisor)
    exec "$PYTHON" manage.py run_supervisor "$@"
    ;;
migrate)
    "$PYTHON" manage.py migrate --noinput
    exec "$PYTHON" manage.py collectstatic --noinput -v 0
    ;;
create-admin)
    exec "$PYTHON" manage.py create_admin "$@"
    ;;
healthcheck)
    exec "$PYTHON" - "${1:-/readyz}" <<'PY'
import os, sys, urllib.request
host = (os.environ.get("STRATUS_ALLOWED_HOSTS") or "localhost").split(",")[0].strip()
request = urllib.request.Request(
    f"http://127.0.0.1:{os.environ.get('PORT', '8000')}{sys.argv[1]}",
    headers={"Host": host, "X-Forwarded-Proto": "https"},  # as the proxy in front sends them
)
with urllib.request.urlopen(request, timeout=5) as answer:
    sys.exit(0 if answer.status == 200 else 1)
PY
    ;;
manage)
    exec "$PYTHON" manage.py "$@"
    ;;
*)
    echo "stratus: unknown command '$cmd' (web, worker, beat, scheduler, supervisor, migrate, create-admin, healthcheck, manage)" >&2
    exit 64
    ;;
esac
