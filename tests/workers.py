"""Real Celery worker processes for tests: tasks travel through Redis, as in production."""

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from django.conf import settings

from console.celery import app

ROOT = Path(__file__).resolve().parent.parent


def worker_env() -> dict[str, str]:
    env = dict(os.environ)
    env["KENPIN_TEST_WORKER"] = "1"  # tests/settings.py: use the test database
    env["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Worker:
    def __init__(self, *, queues: str = "training,inference,default", pool: str = "threads", concurrency: int = 2):
        self.name = f"test-{uuid.uuid4().hex[:8]}@kenpin"
        self.log = Path(settings.DATA_DIR) / f"{self.name}.log"
        args = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "console",
            "worker",
            "-n",
            self.name,
            "-Q",
            queues,
            "-P",
            pool,
            "-c",
            str(concurrency),
            "--without-gossip",
            "--without-mingle",
            "-l",
            "INFO",
        ]
        self.process = subprocess.Popen(
            args,
            cwd=ROOT,
            env=worker_env(),
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so kill() takes its children too
        )

    def wait_ready(self, timeout: float = 60) -> "Worker":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the worker exited:\n{self.tail()}")
            if app.control.ping(destination=[self.name], timeout=0.5):
                return self
        raise RuntimeError(f"the worker did not answer within {timeout} s:\n{self.tail()}")

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        """Kill -9 the whole worker, as the kernel's OOM killer or a lost machine would."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
