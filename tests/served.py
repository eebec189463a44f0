"""A whole Kenpin started by `manage.py serve`, as `make run` starts it, for tests that kill its
processes: its own data folder, SQLite and embedded Redis (unless `env` says otherwise), and a
hosted model restored into it from the session's trained model."""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without Kenpin's settings (the test run's database, Redis...)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("KENPIN_", "DATABASE_URL", "REDIS_URL", "S3_", "DJANGO_"))
    }
    env.update(PYTHONUNBUFFERED="1", **extra)
    return env


class Served:
    def __init__(self, data: Path, **env: str):
        self.data = data
        self.port = free_port()
        self.redis_port = free_port()
        self.env = clean_env(
            KENPIN_DATA_DIR=str(data),
            KENPIN_PORT=str(self.port),
            KENPIN_EMBEDDED_REDIS_PORT=str(self.redis_port),
            **env,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.output = ""
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=self.env, check=True)

    def start(self, timeout: float = 180) -> "Served":
        self.output = ""
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "serve"],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        # A thread reads serve's output as it comes, so that a serve that hangs silently fails the
        # test instead of blocking it, and nothing it prints waits unread in a buffer.
        threading.Thread(target=self._read, args=(self.process,), daemon=True).start()
        self.wait_for_output("Kenpin is running at", timeout)
        return self

    def _read(self, process: subprocess.Popen) -> None:
        for line in process.stdout:
            self.output += line

    def wait_for_output(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            if self.process.poll() is not None or time.monotonic() > deadline:
                time.sleep(0.2)  # the last lines
                raise AssertionError(f"serve did not print {text!r}:\n{self.output}")
            time.sleep(0.1)

    def pids(self) -> dict[str, int]:
        """The pid of each process serve runs now, from its run file."""
        run = json.loads((self.data / "run" / "serve.json").read_text())
        return {child["name"]: child["pid"] for child in run["children"]}

    def seed(self, trained) -> dict:
        """A user, an API token and a project `cookies` whose version 1 is the trained model, HOSTED."""
        with tempfile.TemporaryDirectory() as tmp:
            spec = Path(tmp) / "spec.json"
            for name, data in trained.files.items():
                (Path(tmp) / name).write_bytes(data)
            fields = {k: v for k, v in trained.fields.items() if k not in ("started_at", "ended_at")}
            spec.write_text(json.dumps({"dir": tmp, "fields": fields}))
            out = subprocess.run(
                [sys.executable, "-m", "tests.seed_served", str(spec)],
                cwd=ROOT,
                env=self.env,
                check=True,
                capture_output=True,
                text=True,
            )
        return json.loads(out.stdout.strip().splitlines()[-1])

    def kill(self) -> None:
        """kill -9 serve itself."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.kill()


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(interval)


def process_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def detect_once(session: requests.Session, url: str, token: str, photo: bytes, timeout: float = 60):
    return session.post(
        url, data=photo, headers={"Authorization": f"Bearer {token}", "Content-Type": "image/jpeg"}, timeout=timeout
    )


class Gunicorn:
    """Kenpin's real web server (gunicorn with console/gunicorn.py and the edge, console/wsgi.py)
    on the test database, for tests of what only a real server shows: connections, bodies."""

    def __init__(self, **env: str):
        from tests.workers import worker_env

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile(prefix="kenpin-gunicorn-", suffix=".log", delete=False)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "console.wsgi", "-c", "python:console.gunicorn"]
            + ["--bind", f"127.0.0.1:{self.port}", "--workers", "1"],
            cwd=ROOT,
            env={**worker_env(), **env},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_for(self._up, 30, "gunicorn answers", interval=0.1)

    def _up(self) -> bool:
        assert self.process.poll() is None, Path(self.log.name).read_text()
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        Path(self.log.name).unlink(missing_ok=True)
