"""Run all of Kenpin on this machine: Redis (unless REDIS_URL is set), the workers, the
scheduler and the web server, until Ctrl-C stops them all.

On several machines, run the same pieces separately instead (README, "Scaling out").
"""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import redis
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from console.celery import app
from console.embedded_redis import redis_server_command


class Command(BaseCommand):
    help = "Run Kenpin (web server, workers, scheduler and, by default, an embedded Redis) until Ctrl-C."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("KENPIN_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("KENPIN_PORT", "8000")))
        parser.add_argument("--web-workers", type=int, default=2)

    def handle(self, *args, host, port, web_workers, **options):
        self.processes: list[tuple[str, subprocess.Popen]] = []
        self.stopping = False
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        logs = settings.DATA_DIR / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        try:
            if not os.environ.get("REDIS_URL"):
                self._start(
                    "redis",
                    redis_server_command(settings.DATA_DIR / "redis", settings.KENPIN_EMBEDDED_REDIS_PORT),
                    logs,
                )
            self._wait_for_redis()
            celery = [sys.executable, "-m", "celery", "-A", "console"]
            # Training: one task at a time, each in a fresh child process, so that the memory
            # of a large training goes back to the system when it ends.
            self._start(
                "training-worker",
                celery
                + [
                    "worker",
                    "-Q",
                    "training",
                    "-c",
                    "1",
                    "-n",
                    "training@%h",
                    "--max-tasks-per-child",
                    "1",
                    "-l",
                    "INFO",
                ],
                logs,
            )
            # Inference: hosted models stay loaded in this one process; threads share them and
            # serve several detect calls at once (onnxruntime releases the GIL).
            self._start(
                "inference-worker",
                celery
                + ["worker", "-Q", "inference,default", "-P", "threads", "-c", "4", "-n", "inference@%h", "-l", "INFO"],
                logs,
            )
            self._start(
                "scheduler", celery + ["beat", "-s", str(settings.DATA_DIR / "celerybeat-schedule"), "-l", "INFO"], logs
            )
            self._start(
                "web",
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "console.wsgi",
                    "--bind",
                    f"{host}:{port}",
                    "--workers",
                    str(web_workers),
                    "--worker-class",
                    "gthread",
                    "--threads",
                    "8",
                    "--timeout",
                    "120",
                    "--access-logfile",
                    "-",
                ],
                logs,
            )
            self._wait_for_web(host, port)
            self._wait_for_workers({"training", "inference"})
            self.stdout.write(
                self.style.SUCCESS(f"Kenpin is running at http://{host}:{port}/")
                + f"\nLogs are in {logs}. Press Ctrl-C to stop."
            )
            self._watch()
        finally:
            self._stop_all()

    def _on_signal(self, signum, frame):
        self.stopping = True

    def _start(self, name, args, logs: Path):
        log = (logs / f"{name}.log").open("ab")
        # Own process group: Ctrl-C in the terminal reaches only us, and we stop the children
        # in order (web first, Redis last) instead of all at once.
        process = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=settings.BASE_DIR
        )
        self.processes.append((name, process))

    def _wait_for_redis(self):
        client = redis.Redis.from_url(settings.REDIS_URL)
        deadline = time.monotonic() + 20
        while not self.stopping:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                self._check_children()
                if time.monotonic() > deadline:
                    raise CommandError(f"Redis at {settings.REDIS_URL} does not answer.") from None
                time.sleep(0.1)

    def _wait_for_web(self, host, port):
        deadline = time.monotonic() + 60
        while not self.stopping:
            self._check_children()
            try:
                with socket.create_connection((host, port), timeout=0.5):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise CommandError(
                        f"The web server did not start; see {settings.DATA_DIR / 'logs' / 'web.log'}."
                    ) from None
                time.sleep(0.2)

    def _wait_for_workers(self, names: set[str]):
        deadline = time.monotonic() + 120
        while not self.stopping:
            self._check_children()
            ready = {name.split("@")[0] for reply in app.control.ping(timeout=1) for name in reply}
            if names <= ready:
                return
            if time.monotonic() > deadline:
                raise CommandError(f"The workers {', '.join(sorted(names - ready))} did not start; see their logs.")

    def _check_children(self):
        for name, process in self.processes:
            if process.poll() is not None:
                raise CommandError(
                    f"{name} stopped (exit code {process.returncode}); see {settings.DATA_DIR / 'logs' / (name + '.log')}."
                )

    def _watch(self):
        while not self.stopping:
            self._check_children()
            time.sleep(0.5)

    def _stop_all(self):
        if self.processes:
            self.stdout.write("Stopping Kenpin…")
        for _name, process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if self.processes:
            self.stdout.write("Stopped.")
