"""Stratus settings: one module, read from the environment.

With nothing set, this is the *embedded default* that ``make run`` serves: SQLite, an
in-memory channel layer, an in-process Celery worker, everything under one data directory.
Setting DATABASE_URL / REDIS_URL switches the same code to PostgreSQL and Redis.
``STRATUS_PRODUCTION=1`` turns on the hardened profile (see README "Production").
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from apps.core.isolation.egress import parse_egress_rules
from apps.core.isolation.uid_ranges import ranges_of
from apps.core.origins import parse_functions_url
from console.datadir import ensure_dir, ensure_private_dir, generated_encryption_key, generated_secret_key
from console.env import env_bool, env_int, env_list, env_str, redis_database_number, without_query_option

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = ensure_private_dir(Path(env_str("STRATUS_DATA_DIR") or BASE_DIR / "var").resolve())

PRODUCTION = env_bool("STRATUS_PRODUCTION", False)
DEBUG = env_bool("STRATUS_DEBUG", False)

if PRODUCTION:
    SECRET_KEY = env_str("STRATUS_SECRET_KEY") or ""
    if len(SECRET_KEY) < 50:
        raise ImproperlyConfigured(
            "STRATUS_SECRET_KEY (or STRATUS_SECRET_KEY_FILE) must be set to at least 50 characters "
            "when STRATUS_PRODUCTION=1"
        )
    ENCRYPTION_KEYS = env_list("STRATUS_ENCRYPTION_KEYS")
    if not ENCRYPTION_KEYS:
        raise ImproperlyConfigured(
            "STRATUS_ENCRYPTION_KEYS (or STRATUS_ENCRYPTION_KEYS_FILE) must be set when STRATUS_PRODUCTION=1"
        )
else:
    SECRET_KEY = env_str("STRATUS_SECRET_KEY") or generated_secret_key(DATA_DIR)
    # Comma-separated Fernet keys; the first encrypts, all decrypt (rotation: prepend a new
    # key, run `manage.py rotate_secrets`, then drop the old one).
    ENCRYPTION_KEYS = env_list("STRATUS_ENCRYPTION_KEYS") or [generated_encryption_key(DATA_DIR)]

ALLOWED_HOSTS = env_list("STRATUS_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("STRATUS_CSRF_TRUSTED_ORIGINS")
# Base URL used in links we send out (invitation emails).
PUBLIC_URL = (env_str("STRATUS_PUBLIC_URL") or f"http://127.0.0.1:{env_int('PORT', 8000)}").rstrip("/")
# The origin tenant code (functions) is served from: a host name that shares no cookies with
# the console and cannot set any for it (README "Origins", apps/core/origins.py). The gateway
# serves only functions on it; the console's host still answers /fn/ for API clients,
# cookieless and sandboxed. In production a registrable domain of its own: paths on one host
# (https://fn.example.net) or a host per function
# (https://{function}.{env}.{project}.{org}.fn.example.net); in the embedded default the other
# loopback name on the same port: browsers keep the cookies of 127.0.0.1 and localhost apart,
# and neither can set any for the other.
_console_hostname = urlsplit(PUBLIC_URL).hostname or ""
_loopback_name = "localhost" if _console_hostname.rstrip(".").split(".")[-1] != "localhost" else "127.0.0.1"
STRATUS_FUNCTIONS_URL = (env_str("STRATUS_FUNCTIONS_URL") or f"http://{_loopback_name}:{env_int('PORT', 8000)}").rstrip(
    "/"
)
try:
    parse_functions_url(STRATUS_FUNCTIONS_URL)
except ValueError as exc:
    raise ImproperlyConfigured(str(exc)) from None

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "guardian",
    "channels",
    "apps.core",
    "apps.audit",
    "apps.tenancy",
    "apps.functions",
    "apps.pipelines",
    "apps.monitoring",
    "apps.engine",
    "apps.releases",
    "apps.alerts",
    "apps.triggers",
]

MIDDLEWARE = [
    "apps.core.middleware.RequestIdMiddleware",
    # /healthz and /readyz for probes on any Host over plain HTTP (before the SSL redirect and
    # ALLOWED_HOSTS, which keep guarding every other path).
    "apps.core.middleware.ProbeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "apps.core.middleware.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "apps.core.middleware.BodySizeLimitMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "console.urls"
ASGI_APPLICATION = "console.asgi.application"
WSGI_APPLICATION = "console.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "frontend" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "apps.tenancy.context.console_nav",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    # ASGI runs every sync view in a thread of its own, and Django keeps a persistent connection
    # per thread: with CONN_MAX_AGE > 0 a busy web process opens (and leaves open) as many
    # connections as it had threads, past PostgreSQL's max_connections. So each process keeps a
    # bounded pool instead (Django's PostgreSQL pool, psycopg_pool): at most DB_POOL_MAX
    # connections, DB_POOL_MIN kept open; a request waits up to DB_POOL_TIMEOUT_S for one.
    # DB_POOL_MAX=0 turns the pool off: a connection per request (DB_CONN_MAX_AGE, default 0).
    DB_POOL_MAX = env_int("DB_POOL_MAX", 10)
    DB_POOL_MIN = env_int("DB_POOL_MIN", min(2, DB_POOL_MAX))
    DB_POOL_TIMEOUT_S = float(env_str("DB_POOL_TIMEOUT_S") or 30)
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 0))}
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and DB_POOL_MAX > 0:
        if not 0 <= DB_POOL_MIN <= DB_POOL_MAX:
            raise ImproperlyConfigured(f"DB_POOL_MIN must be from 0 to DB_POOL_MAX ({DB_POOL_MAX}), got {DB_POOL_MIN}")
        if DATABASES["default"]["CONN_MAX_AGE"]:
            raise ImproperlyConfigured("DB_CONN_MAX_AGE must be 0 with the connection pool (DB_POOL_MAX > 0)")
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": DB_POOL_MIN,
            "max_size": DB_POOL_MAX,
            "timeout": DB_POOL_TIMEOUT_S,
        }
    # Lets two test runs share one server without dropping each other's test database.
    if env_str("STRATUS_TEST_DATABASE_NAME"):
        DATABASES["default"]["TEST"] = {"NAME": env_str("STRATUS_TEST_DATABASE_NAME")}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(DATA_DIR / "stratus.sqlite3"),
            "OPTIONS": {
                # WAL lets the in-process worker read while a request writes; IMMEDIATE
                # takes the write lock at BEGIN so two writers queue instead of failing
                # with "database is locked" half-way through a transaction.
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
            # A file, not the default in-memory database: tests that serve the console
            # read it from the engine's threads, and shared-cache memory databases answer
            # "table is locked" instead of waiting.
            "TEST": {"NAME": str(DATA_DIR / "test-stratus.sqlite3")},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: channel layer and broker ------------------------------------------------------
REDIS_URL = env_str("REDIS_URL")
EMBEDDED = not REDIS_URL
# The installation's namespace on a shared Redis: every key and pub/sub channel of this
# installation starts with STRATUS_REDIS_PREFIX ("stratus:<instance>:"). Pub/sub channels are
# global to a Redis server, whatever database number a client selected, so without it two
# installations on one Redis (databases 0 and 1) hear each other's route changes and token
# revocations. Every process of an installation must agree: the default is taken from REDIS_URL's
# database number ("db0"); give each installation that shares a database number one of its own.
STRATUS_INSTANCE = env_str("STRATUS_INSTANCE") or f"db{redis_database_number(REDIS_URL or '')}"
if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", STRATUS_INSTANCE):
    raise ImproperlyConfigured(f"STRATUS_INSTANCE must be 1-64 of A-Z a-z 0-9 _ . -, got {STRATUS_INSTANCE!r}")
STRATUS_REDIS_PREFIX = f"stratus:{STRATUS_INSTANCE}:"
# The Redis client's read timeout for the channel layer. channels_redis waits for a message with
# a blocking BZPOPMIN of 5 s; redis-py's default socket_timeout is also 5 s, so a quiet channel's
# receive failed ("Timeout reading from ...") and dropped the websocket after 5 s of silence.
# It must stay well above those 5 s; a dead Redis connection still fails after it.
STRATUS_REDIS_SOCKET_TIMEOUT_S = float(env_str("STRATUS_REDIS_SOCKET_TIMEOUT_S") or 30)
if STRATUS_REDIS_SOCKET_TIMEOUT_S < 10:
    raise ImproperlyConfigured(
        f"STRATUS_REDIS_SOCKET_TIMEOUT_S must be 10 or more (the channel layer blocks 5 s per read), "
        f"got {STRATUS_REDIS_SOCKET_TIMEOUT_S:g}"
    )
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [
                    {
                        # Options in the URL override these: a socket_timeout there is dropped.
                        "address": without_query_option(REDIS_URL, "socket_timeout"),
                        "socket_timeout": STRATUS_REDIS_SOCKET_TIMEOUT_S,
                        "socket_connect_timeout": 5,
                        "socket_keepalive": True,
                        "health_check_interval": 15,
                    }
                ],
                "prefix": f"{STRATUS_REDIS_PREFIX}asgi",
            },
        }
    }
    CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or REDIS_URL
    # The broker's queues, bindings and fanout channels in this installation's namespace too.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"global_keyprefix": STRATUS_REDIS_PREFIX}
else:
    # Channels' in-memory layer, made safe for sends from the worker's threads.
    CHANNEL_LAYERS = {"default": {"BACKEND": "apps.core.channel_layer.InMemoryChannelLayer"}}
    # kombu's in-memory transport: the broker lives inside this process, consumed by the
    # worker thread that `manage.py serve` starts (apps/core/worker.py).
    CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or "memory://"
    if CELERY_BROKER_URL == "memory://":
        # ...woken by puts and acks, not by kombu's 1 s polling (apps/core/memory_transport.py).
        CELERY_BROKER_TRANSPORT = "apps.core.memory_transport:Transport"
# Run the in-process worker (embedded default). Production runs `celery -A console worker`.
STRATUS_EMBEDDED_WORKER = env_bool("STRATUS_EMBEDDED_WORKER", EMBEDDED)
# Schedules (apps/triggers): run the scheduler's 1 s loop inside the worker (the embedded
# default does); production runs `manage.py run_scheduler` beside the workers instead.
STRATUS_SCHEDULER_IN_WORKER = env_bool("STRATUS_SCHEDULER_IN_WORKER", STRATUS_EMBEDDED_WORKER)
STRATUS_TRIGGER_WORKERS = env_int("STRATUS_TRIGGER_WORKERS", 8)  # fires run at once per scheduler
STRATUS_TRIGGER_FIRES_KEPT = env_int("STRATUS_TRIGGER_FIRES_KEPT", 100)  # fire records kept per trigger
# An occurrence found later than this (no scheduler ran) follows its misfire policy.
STRATUS_TRIGGER_MISFIRE_GRACE_S = env_int("STRATUS_TRIGGER_MISFIRE_GRACE_S", 60)
# Asynchronous events (apps/triggers/dispatcher.py runs beside the scheduler): attempts at once
# per dispatcher, the retry backoff (base × 2^(n-1), capped, half jittered), and the gateway's
# threads that store accepted events before its 202.
STRATUS_ASYNC_WORKERS = env_int("STRATUS_ASYNC_WORKERS", 16)
STRATUS_ASYNC_BACKOFF_BASE_S = env_int("STRATUS_ASYNC_BACKOFF_BASE_S", 5)
STRATUS_ASYNC_BACKOFF_MAX_S = env_int("STRATUS_ASYNC_BACKOFF_MAX_S", 300)
STRATUS_GATEWAY_ACCEPT_THREADS = env_int("STRATUS_GATEWAY_ACCEPT_THREADS", 4)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True  # a task whose worker dies is redelivered; tasks are idempotent
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = env_str("STRATUS_TASK_QUEUE") or "stratus"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# `celery -A console beat` keeps its schedule state (last run times) here, not in the working
# directory (a read-only checkout or image); it is rebuilt from the schedule when missing.
CELERY_BEAT_SCHEDULE_FILENAME = str(ensure_dir(DATA_DIR / "beat") / "celerybeat-schedule")

# --- Auth ----------------------------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
GUARDIAN_ANONYMOUS_USER_NAME = None  # anonymous users never hold object permissions
GUARDIAN_RAISE_403 = False
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

# --- API -----------------------------------------------------------------------------
# How deeply a JSON body may nest arrays and objects (apps/core/parsers.py); deeper is a 400.
# Python's json module recurses per level: without a bound, ~1,000 levels is a RecursionError.
STRATUS_MAX_JSON_DEPTH = env_int("STRATUS_MAX_JSON_DEPTH", 64)
if not 8 <= STRATUS_MAX_JSON_DEPTH <= 512:
    raise ImproperlyConfigured(f"STRATUS_MAX_JSON_DEPTH must be between 8 and 512, got {STRATUS_MAX_JSON_DEPTH}")
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apps.tenancy.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "apps.tenancy.authentication.TokenScopePermission",
    ],
    # DRF's JSON parser with a nesting bound (STRATUS_MAX_JSON_DEPTH): deeper bodies answer 400.
    "DEFAULT_PARSER_CLASSES": ["apps.core.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PAGINATION_CLASS": "apps.core.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "apps.core.exception_handler.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "apps.core.schema.AutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Stratus API",
    "DESCRIPTION": "Self-hosted console for serverless apps. Send `Authorization: Bearer <token>`.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    # The enum hook is drf-spectacular's default; ours documents the error envelope and the
    # 400/401/403/404 (409, 413, 415) answers on every operation (apps/core/schema.py).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "apps.core.schema.document_error_responses",
    ],
    "ENUM_NAME_OVERRIDES": {
        "OrgRoleEnum": "apps.tenancy.roles.Role",
        "ProjectRoleEnum": "apps.tenancy.roles.PROJECT_ROLE_CHOICES",
        "KindEnum": "apps.functions.models.Kind",  # a function's kind (keeps its name)
        "RepositoryCredentialsKindEnum": "apps.pipelines.api.serializers.CREDENTIAL_KINDS",
        "RunStateEnum": "apps.pipelines.models.Run.State",
        "RunTriggerEnum": "apps.pipelines.models.Run.Trigger",
        "AlertSeverityEnum": "apps.alerts.models.Severity",
        "AlertStateEnum": "apps.alerts.models.AlertState",
        "AsyncEventStateEnum": "apps.triggers.models.AsyncState",
    },
}
# Largest request body the API accepts (bytes); larger answers 413 with the error envelope.
STRATUS_MAX_REQUEST_BYTES = env_int("STRATUS_MAX_REQUEST_BYTES", 2 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = STRATUS_MAX_REQUEST_BYTES
# Zip uploads of function code (multipart), larger than the JSON limit above.
STRATUS_MAX_UPLOAD_BYTES = env_int("STRATUS_MAX_UPLOAD_BYTES", 50 * 1024 * 1024)
# Git host webhook bodies (/hooks/...): GitHub sends up to 25 MB; larger answers 413.
STRATUS_WEBHOOK_MAX_BYTES = env_int("STRATUS_WEBHOOK_MAX_BYTES", 25 * 1024 * 1024)
# Whether a project's repository may be on this server or its network: a path (file:// or
# /abs/path: a clone would read the server's own files) or a URL whose host resolves to a
# loopback, link-local (cloud metadata), private, shared (CGNAT), multicast or unspecified
# address, or to an address of this server (a fetch there is a request forgery into the host's
# network). Off: refused when the repository is connected (400) and again before every fetch,
# after resolving the name anew (apps/pipelines/remote.py). On for a git server on the private
# network, and in tests (local repositories, git servers on 127.0.0.1).
STRATUS_REPOSITORY_ALLOW_LOCAL = env_bool("STRATUS_REPOSITORY_ALLOW_LOCAL", False)
# Webhook POSTs with a bad signature are all counted (per repository), and a rejection record
# is stored for at most this many of them per repository and minute: an unauthenticated flood
# cannot fill the database.
STRATUS_WEBHOOK_REJECTED_PER_MINUTE = env_int("STRATUS_WEBHOOK_REJECTED_PER_MINUTE", 10)
# Alert webhooks (apps/alerts/webhooks.py) go to public addresses only: loopback, private,
# link-local... and this server's own addresses are refused unless listed here (egress rule
# syntax: "10.0.3.7", "10.0.0.0/8:8000-8099", "127.0.0.1"), e.g. a chat bridge on the private
# network. Failed deliveries are retried STRATUS_ALERT_MAX_ATTEMPTS times in all, waiting
# STRATUS_ALERT_RETRY_BASE_S, then twice as long each time (10, 20, 40, 80, 160 s).
STRATUS_ALERT_WEBHOOK_ALLOW = env_list("STRATUS_ALERT_WEBHOOK_ALLOW")
try:
    parse_egress_rules(STRATUS_ALERT_WEBHOOK_ALLOW)
except ValueError as exc:
    raise ImproperlyConfigured(f"STRATUS_ALERT_WEBHOOK_ALLOW: {exc}") from None
STRATUS_ALERT_MAX_ATTEMPTS = env_int("STRATUS_ALERT_MAX_ATTEMPTS", 6)
STRATUS_ALERT_RETRY_BASE_S = float(env_str("STRATUS_ALERT_RETRY_BASE_S") or 10)
INVITATION_TTL_DAYS = env_int("STRATUS_INVITATION_TTL_DAYS", 7)
# A token's last-used time is written at most this often, so the API does not do a write
# per authenticated request.
TOKEN_LAST_USED_RESOLUTION_S = env_int("STRATUS_TOKEN_LAST_USED_RESOLUTION_S", 60)

# --- Execution backends ---------------------------------------------------------------------
STRATUS_EXECUTION_BACKENDS = {
    "local": "apps.functions.backends.local.LocalBackend",
    "knative": "apps.functions.backends.knative.KnativeBackend",
}
STRATUS_DEFAULT_BACKEND = env_str("STRATUS_DEFAULT_BACKEND") or "local"
if STRATUS_DEFAULT_BACKEND not in STRATUS_EXECUTION_BACKENDS:
    raise ImproperlyConfigured(
        f"STRATUS_DEFAULT_BACKEND must be one of {sorted(STRATUS_EXECUTION_BACKENDS)}, got {STRATUS_DEFAULT_BACKEND!r}"
    )

# --- Monitoring: function logs and invocation records ---------------------------------------
# The engine hands records to apps.monitoring.sink.RecordSink, which writes them in batches
# from a background thread every this many seconds (0: no thread, only explicit flush()).
try:
    STRATUS_RECORDS_FLUSH_INTERVAL_S = float(env_str("STRATUS_RECORDS_FLUSH_INTERVAL_S") or 0.5)
except ValueError:
    raise ImproperlyConfigured(
        "STRATUS_RECORDS_FLUSH_INTERVAL_S must be a number of seconds, "
        f"got {env_str('STRATUS_RECORDS_FLUSH_INTERVAL_S')!r}"
    ) from None
if STRATUS_RECORDS_FLUSH_INTERVAL_S < 0:
    raise ImproperlyConfigured("STRATUS_RECORDS_FLUSH_INTERVAL_S must be 0 or more")
# Records (and their bytes) held in memory waiting for a flush; beyond either bound they go to
# the journal on local disk (DATA_DIR/journal), which is replayed on start (apps/monitoring).
# Log lines are written this soon after they are printed (the live tail's latency; several
# lines printed meanwhile share the write); 0: they wait for the flush interval like the rest.
STRATUS_LOG_TAIL_FLUSH_S = float(env_str("STRATUS_LOG_TAIL_FLUSH_S") or 0.01)
# The live tail (apps/monitoring/tail.py): lines a watcher gets at most per second (more are
# dropped and counted to it), and lines queued for a slow watcher before new ones are dropped.
STRATUS_LOG_TAIL_RATE = env_int("STRATUS_LOG_TAIL_RATE", 1000)
STRATUS_LOG_TAIL_BUFFER = env_int("STRATUS_LOG_TAIL_BUFFER", 5000)
# Seconds between SSE heartbeats (a comment line that keeps proxies from closing the stream).
STRATUS_LOG_TAIL_HEARTBEAT_S = float(env_str("STRATUS_LOG_TAIL_HEARTBEAT_S") or 15)
STRATUS_RECORDS_BUFFER = env_int("STRATUS_RECORDS_BUFFER", 100_000)
STRATUS_RECORDS_BUFFER_BYTES = env_int("STRATUS_RECORDS_BUFFER_BYTES", 64 * 1024 * 1024)
# The journal's own cap (0: until the disk is full); only past it, or a full disk, are records dropped.
STRATUS_RECORDS_JOURNAL_BYTES = env_int("STRATUS_RECORDS_JOURNAL_BYTES", 4 * 1024**3)
STRATUS_LOG_RETENTION_DAYS = env_int("STRATUS_LOG_RETENTION_DAYS", 7)
STRATUS_LOG_MAX_LINES_PER_FUNCTION = env_int("STRATUS_LOG_MAX_LINES_PER_FUNCTION", 10_000)
STRATUS_INVOCATION_RETENTION_DAYS = env_int("STRATUS_INVOCATION_RETENTION_DAYS", 30)
# Metric rollups (apps/monitoring/rollups.py): per-minute rows kept this many days, per-hour
# rows this many; the compaction task runs every STRATUS_METRICS_COMPACT_INTERVAL_S.
STRATUS_METRICS_MINUTE_RETENTION_DAYS = env_int("STRATUS_METRICS_MINUTE_RETENTION_DAYS", 7)
STRATUS_METRICS_RETENTION_DAYS = env_int("STRATUS_METRICS_RETENTION_DAYS", 90)
STRATUS_METRICS_COMPACT_INTERVAL_S = env_int("STRATUS_METRICS_COMPACT_INTERVAL_S", 300)

# --- Static files ----------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = ensure_dir(DATA_DIR / "static")
STATICFILES_DIRS = [BASE_DIR / "frontend" / "static"]
if (BASE_DIR / "frontend" / "build").is_dir():
    STATICFILES_DIRS.append(BASE_DIR / "frontend" / "build")
# The embedded default serves straight from the source folders (no collectstatic step);
# production runs collectstatic and serves compressed, hashed files.
WHITENOISE_USE_FINDERS = not PRODUCTION
# Cached for a year: the manifest's hashed names (WhiteNoise's default test, which this
# setting replaces) and vendored files under a folder named for their version: Monaco's AMD
# loader asks for unhashed names, so vendor/monaco/<version>/ is the cache key (build.mjs).
WHITENOISE_IMMUTABLE_FILE_TEST = r"\.[0-9a-f]{12}\.[^/]+$|/vendor/(monaco|uplot)/\d+\.\d+\.\d+[^/]*/"
_ARTIFACT_STORAGE = env_str("STRATUS_ARTIFACT_STORAGE") or "django.core.files.storage.FileSystemStorage"
if _ARTIFACT_STORAGE.startswith("storages.") and importlib.util.find_spec("storages") is None:
    raise ImproperlyConfigured(
        f"STRATUS_ARTIFACT_STORAGE={_ARTIFACT_STORAGE} needs django-storages, the s3 extra of pyproject.toml: "
        "pip install 'django-storages[s3]>=1.14,<2' (docs/DEPLOY.md)"
    )


def _artifact_storage_options(backend: str) -> dict[str, object]:
    if backend == "django.core.files.storage.FileSystemStorage":
        return {"location": str(DATA_DIR)}
    if backend == "storages.backends.s3.S3Storage":
        # Credentials: boto3's own chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a pod's or
        # instance's role). Objects are private: the console serves them (signed URLs).
        options: dict[str, object] = {
            "bucket_name": env_str("STRATUS_S3_BUCKET") or "",
            "location": env_str("STRATUS_S3_PREFIX") or "",
            "default_acl": None,
            "querystring_auth": True,
        }
        if not options["bucket_name"]:
            raise ImproperlyConfigured("STRATUS_S3_BUCKET must name the bucket when the artifact storage is S3")
        for option, name in (("endpoint_url", "STRATUS_S3_ENDPOINT_URL"), ("region_name", "STRATUS_S3_REGION")):
            if env_str(name):
                options[option] = env_str(name)
        return options
    return {}


STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Content-addressed function artifacts: files under the data directory, or any Django
    # storage. S3 (or an S3 API such as MinIO): the `s3` extra (django-storages and boto3),
    # STRATUS_ARTIFACT_STORAGE=storages.backends.s3.S3Storage and STRATUS_S3_BUCKET; optionally
    # STRATUS_S3_ENDPOINT_URL, STRATUS_S3_REGION, STRATUS_S3_PREFIX (docs/DEPLOY.md).
    "artifacts": {
        "BACKEND": _ARTIFACT_STORAGE,
        "OPTIONS": _artifact_storage_options(_ARTIFACT_STORAGE),
    },
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
MEDIA_ROOT = DATA_DIR / "media"

# --- Email -----------------------------------------------------------------------------
EMAIL_BACKEND = env_str("STRATUS_EMAIL_BACKEND") or (
    "django.core.mail.backends.smtp.EmailBackend" if PRODUCTION else "django.core.mail.backends.filebased.EmailBackend"
)
EMAIL_FILE_PATH = DATA_DIR / "mail"
EMAIL_HOST = env_str("STRATUS_EMAIL_HOST") or "localhost"
EMAIL_PORT = env_int("STRATUS_EMAIL_PORT", 25)
DEFAULT_FROM_EMAIL = env_str("STRATUS_FROM_EMAIL") or "stratus@localhost"

# --- Security (production profile) ------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
# Names of our own, not Django's defaults: the gateway strips the console's cookies from every
# request to a function (apps/engine/gateway.py), which would otherwise also take a tenant
# Django app's own "sessionid" and "csrftoken".
SESSION_COOKIE_NAME = "stratus_session"
CSRF_COOKIE_NAME = "stratus_csrftoken"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
if PRODUCTION:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env_bool("STRATUS_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("STRATUS_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env_bool("STRATUS_HSTS_PRELOAD", False)
    if env_bool("STRATUS_BEHIND_PROXY", False):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]

# --- Logging: one JSON line per event -------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "apps.core.logging.RequestIdFilter"}},
    "formatters": {"json": {"()": "apps.core.logging.JsonFormatter"}},
    "handlers": {
        "stdout": {"class": "logging.StreamHandler", "formatter": "json", "filters": ["request_id"]},
    },
    "root": {"handlers": ["stdout"], "level": env_str("STRATUS_LOG_LEVEL") or "INFO"},
    "loggers": {
        "django.server": {"level": "WARNING"},
        "uvicorn.access": {"level": "WARNING"},  # our own request log replaces it
        "celery": {"level": "WARNING"},
    },
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Knative backend ---------------------------------------------------------------------
# Where the `knative` execution backend runs functions. No kubeconfig path means the
# in-cluster service-account config (Stratus itself running in the cluster).
STRATUS_KNATIVE_KUBECONFIG = env_str("STRATUS_KNATIVE_KUBECONFIG")
STRATUS_KNATIVE_CONTEXT = env_str("STRATUS_KNATIVE_CONTEXT")
STRATUS_KNATIVE_NAMESPACE = env_str("STRATUS_KNATIVE_NAMESPACE") or "stratus"
# The runtime image built from runtime/Dockerfile (pushed to a registry the cluster can pull).
STRATUS_KNATIVE_IMAGE = env_str("STRATUS_KNATIVE_IMAGE") or "stratus/runtime:latest"
# Lifetime of the signed artifact URLs the runtime fetches at start (apps/functions/artifact_urls.py).
STRATUS_ARTIFACT_URL_TTL_S = env_int("STRATUS_ARTIFACT_URL_TTL_S", 3600)

# The local engine (supervisor) and the function gateway (/fn/...).
# "embedded": the engine runs inside each web process (the default, one process);
# "remote": web processes forward to `manage.py run_supervisor` over STRATUS_SUPERVISOR_SOCKET.
STRATUS_ENGINE = env_str("STRATUS_ENGINE") or "embedded"
if STRATUS_ENGINE not in ("embedded", "remote"):
    raise ImproperlyConfigured(f"STRATUS_ENGINE must be 'embedded' or 'remote', got {STRATUS_ENGINE!r}")
STRATUS_SUPERVISOR_SOCKET = Path(env_str("STRATUS_SUPERVISOR_SOCKET") or DATA_DIR / "run" / "supervisor.sock")
# One supervisor per data directory: `run_supervisor` holds an flock on this file for its
# lifetime; a second one exits at once naming the holder's pid (apps/engine/supervisor_lock.py).
STRATUS_SUPERVISOR_LOCK = DATA_DIR / "run" / "supervisor.lock"
# SIGTERM to the supervisor: it stops taking invocations (503 engine_unavailable), lets those in
# flight finish for up to this many seconds, then stops every instance. A second signal hurries it.
STRATUS_SHUTDOWN_GRACE_S = float(env_str("STRATUS_SHUTDOWN_GRACE_S") or 30)
# Function code copies and private home dirs of instances when the engine runs as root
# (each function under its own uid, STRATUS_SANDBOX_UID_BASE + function id).
STRATUS_SANDBOX_DIR = Path(env_str("STRATUS_SANDBOX_DIR") or DATA_DIR / "sandbox")
# The uids of tenant code when root, three ranges of STRATUS_UID_RANGE_SIZE uids per installation:
# functions (base + execution identity), pipeline steps (base + run id), language servers (base +
# a random number). Every installation on a host needs ranges of its own; each process claims them
# in STRATUS_UID_REGISTRY before it drops to one, and a range another running installation holds
# stops it with an error (apps/core/isolation/uid_ranges.py).
STRATUS_SANDBOX_UID_BASE = env_int("STRATUS_SANDBOX_UID_BASE", 200000)
STRATUS_PIPELINE_UID_BASE = env_int("STRATUS_PIPELINE_UID_BASE", 1_000_000_000)
STRATUS_LSP_UID_BASE = env_int("STRATUS_LSP_UID_BASE", 1_500_000_000)
STRATUS_UID_RANGE_SIZE = env_int("STRATUS_UID_RANGE_SIZE", 100_000_000)
STRATUS_UID_REGISTRY = Path(env_str("STRATUS_UID_REGISTRY") or "/run/stratus/uid-ranges")
try:
    ranges_of(STRATUS_SANDBOX_UID_BASE, STRATUS_PIPELINE_UID_BASE, STRATUS_LSP_UID_BASE, STRATUS_UID_RANGE_SIZE)
except ValueError as exc:
    raise ImproperlyConfigured(str(exc)) from None
# Processes + threads all instances of one function in one environment may run together
# (RLIMIT_NPROC of its uid; each instance also has its own cgroup pids.max of 64).
STRATUS_IDENTITY_MAX_PROCESSES = env_int("STRATUS_IDENTITY_MAX_PROCESSES", 1024)
# Addresses (same syntax as an environment's egress_allow) that no tenant rule may open,
# beyond what the engine protects by itself (the console's port, database, Redis, metadata).
STRATUS_EGRESS_DENY = env_list("STRATUS_EGRESS_DENY")
# Ports the console's web processes listen on (`manage.py serve` adds its own): no tenant rule
# reaches them on any address of this host. Set it for a supervisor whose web processes listen
# on ports other than PORT and STRATUS_PUBLIC_URL's.
STRATUS_LISTEN_PORTS = [int(p) for p in env_list("STRATUS_LISTEN_PORTS", [str(env_int("PORT", 8000))])]
# The region a function's runtime reports (AWS_REGION, AWS_DEFAULT_REGION, TENCENTCLOUD_REGION)
# unless the function's own variables name one: SDKs need a region to build a client at all.
STRATUS_FUNCTION_REGION = env_str("STRATUS_FUNCTION_REGION") or "us-east-1"
if not re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", STRATUS_FUNCTION_REGION) or len(STRATUS_FUNCTION_REGION) > 32:
    raise ImproperlyConfigured(
        f"STRATUS_FUNCTION_REGION must be a region name such as us-east-1 or ap-guangzhou, "
        f"got {STRATUS_FUNCTION_REGION!r}"
    )
STRATUS_GATEWAY_MAX_BODY_BYTES = env_int("STRATUS_GATEWAY_MAX_BODY_BYTES", 6 * 1024 * 1024)
STRATUS_GATEWAY_AUTH_CACHE_S = env_int("STRATUS_GATEWAY_AUTH_CACHE_S", 5)
# How long a request waits for a busy function's instance before 429 Throttled.
STRATUS_QUEUE_TIMEOUT_S = float(env_str("STRATUS_QUEUE_TIMEOUT_S") or 1.0)
# The WebIDE's Python language servers (apps/functions/language_server.py): at most this many
# per web process and per user, each stopped after this long without a message from its editor.
STRATUS_LSP_MAX_SESSIONS = int(env_str("STRATUS_LSP_MAX_SESSIONS") or 8)
STRATUS_LSP_MAX_PER_USER = int(env_str("STRATUS_LSP_MAX_PER_USER") or 3)
STRATUS_LSP_IDLE_S = float(env_str("STRATUS_LSP_IDLE_S") or 600)
# Safety net beside the change announcements: reload the routing table this often.
STRATUS_ROUTES_RESYNC_S = env_int("STRATUS_ROUTES_RESYNC_S", 30)

# --- Organization quotas ----------------------------------------------------------------------
# Defaults for organizations whose quota_* fields are empty (staff set those in the Django
# admin, never the org itself). apps/tenancy/quotas.py refuses, with 403 quota_exceeded, a
# function over STRATUS_ORG_QUOTA_FUNCTIONS, and traffic changes that would reserve
# (min_instances of served versions) more instances or memory (memory_mb +
# ephemeral_storage_mb per instance, in MB) than the quota; the engine caps running ones.
STRATUS_ORG_QUOTA_FUNCTIONS = env_int("STRATUS_ORG_QUOTA_FUNCTIONS", 100)
STRATUS_ORG_QUOTA_INSTANCES = env_int("STRATUS_ORG_QUOTA_INSTANCES", 50)
STRATUS_ORG_QUOTA_MEMORY_MB = env_int("STRATUS_ORG_QUOTA_MEMORY_MB", 16384)
for _quota_name, _quota_value in (
    ("STRATUS_ORG_QUOTA_FUNCTIONS", STRATUS_ORG_QUOTA_FUNCTIONS),
    ("STRATUS_ORG_QUOTA_INSTANCES", STRATUS_ORG_QUOTA_INSTANCES),
    ("STRATUS_ORG_QUOTA_MEMORY_MB", STRATUS_ORG_QUOTA_MEMORY_MB),
):
    if _quota_value < 0:
        raise ImproperlyConfigured(f"{_quota_name} must be 0 or more, got {_quota_value}")
