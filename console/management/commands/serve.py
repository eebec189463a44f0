"""Run all of Kenpin on this machine: Redis and the non-persistent hand-off Redis of detect calls
(unless REDIS_URL is set), the workers, the scheduler and the web server, until Ctrl-C stops
them all.

A piece that dies is started again (console/supervisor.py says how); the pieces die with
`serve`, even when it is killed. On several machines, run the same pieces separately instead,
under systemd (README, "Scaling out"; deploy/systemd/).
"""

import os
import signal
import socket
import sys
import time

import redis
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from console.celery import app
from console.checks import shared_setup_problems
from console.embedded_redis import handoff_redis_command, redis_server_command
from console.supervisor import GaveUp, Supervisor


def inference_environment(environ) -> dict:
    """The inference worker's environment: one thread per call, for onnxruntime (KENPIN_THREADS)
    and numpy's OpenBLAS, unless the operator set them.

    The worker runs one call per core, so calls side by side already use every core; each call
    using all cores as well ran twice as many threads as cores, and OpenBLAS's threads spin
    while they wait for work: 95 ms of CPU per call instead of 39 (docs/benchmarks.md). A call
    alone in the worker gets every core all the same (inference.worker.CallsInFlight).
    """
    return {"KENPIN_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", **environ}


class Command(BaseCommand):
    help = "Run Kenpin (web server, workers, scheduler and, by default, an embedded Redis) until Ctrl-C."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("KENPIN_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("KENPIN_PORT", "8000")))
        parser.add_argument("--web-workers", type=int, default=2)

    def handle(self, *args, host, port, web_workers, **options):
        self.stopping = False
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        logs = settings.DATA_DIR / "logs"
        for problem in shared_setup_problems():
            self.stderr.write(self.style.WARNING(f"Warning: {problem}"))
        self.supervisor = Supervisor(
            run_file=settings.DATA_DIR / "run" / "serve.json", cwd=settings.BASE_DIR, say=self._say
        )
        try:
            stopped = self.supervisor.clear_leftovers()
        except RuntimeError as exc:
            raise CommandError(str(exc)) from None
        if stopped:
            self._say(f"Stopped {len(stopped)} process(es) that a previous run left behind: {stopped}.")
        embedded = not os.environ.get("REDIS_URL")
        try:
            if embedded:
                self._clear_stale_redis(settings.KENPIN_EMBEDDED_REDIS_PORT, settings.DATA_DIR / "redis")
            _ensure_port_free(host, port, what="the web server", setting="KENPIN_PORT or --port")
            if embedded:
                self.supervisor.add(
                    "redis",
                    redis_server_command(settings.DATA_DIR / "redis", settings.KENPIN_EMBEDDED_REDIS_PORT),
                    log=logs / "redis.log",
                )
            if not os.environ.get("KENPIN_HANDOFF_REDIS_URL") and embedded:
                self.supervisor.add(
                    "handoff-redis",
                    handoff_redis_command(settings.KENPIN_EMBEDDED_HANDOFF_SOCKET),
                    log=logs / "handoff-redis.log",
                )
            self._wait_for_redis(settings.REDIS_URL)
            self._wait_for_redis(settings.KENPIN_HANDOFF_REDIS_URL)
            celery = [sys.executable, "-m", "celery", "-A", "console"]
            # Training: one task at a time, each in a fresh child process, so that the memory
            # of a large training goes back to the system when it ends.
            self.supervisor.add(
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
                log=logs / "training-worker.log",
            )
            # Inference: hosted models stay loaded in this one process; threads share them and
            # serve several detect calls at once (onnxruntime and numpy release the GIL), as
            # many as the machine has cores (Celery's default concurrency).
            self.supervisor.add(
                "inference-worker",
                celery + ["worker", "-Q", "inference,default", "-P", "threads", "-n", "inference@%h", "-l", "INFO"],
                log=logs / "inference-worker.log",
                env=inference_environment(os.environ),
            )
            self.supervisor.add(
                "scheduler",
                celery + ["beat", "-s", str(settings.KENPIN_BEAT_SCHEDULE), "-l", "INFO"],
                log=logs / "scheduler.log",
            )
            self.supervisor.add(
                "web",
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "console.wsgi",
                    "--config",
                    "python:console.gunicorn",
                    "--bind",
                    f"{host}:{port}",
                    "--workers",
                    str(web_workers),
                ],
                log=logs / "web.log",
            )
            self._wait_for_web(host, port)
            self._wait_for_workers({"training", "inference"})
            self.stdout.write(
                self.style.SUCCESS(f"Kenpin is running at http://{host}:{port}/")
                + f"\nLogs are in {logs}. Press Ctrl-C to stop."
            )
            self._watch()
        except GaveUp as exc:
            raise CommandError(str(exc)) from None
        finally:
            if self.supervisor.children:
                self.stdout.write("Stopping Kenpin…")
                self.supervisor.stop_all()
                self.stdout.write("Stopped.")

    def _on_signal(self, signum, frame):
        self.stopping = True

    def _say(self, line: str) -> None:
        self.stdout.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}")
        self.stdout.flush()

    def _clear_stale_redis(self, port: int, directory) -> None:
        """The embedded Redis's port must be free: a Redis left there by an earlier run of this
        data folder is shut down (it writes its append-only file first); anything else there
        is reported, with the setting that moves our Redis elsewhere."""
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2)
        try:
            found = client.config_get("dir").get("dir")
        except redis.ConnectionError:
            return _ensure_port_free("127.0.0.1", port, what="the embedded Redis", setting="KENPIN_EMBEDDED_REDIS_PORT")
        except redis.RedisError:
            found = None
        if found != str(directory.resolve()):
            raise CommandError(
                f"Port {port} is taken by another program (a Redis not started by this Kenpin, or another "
                "server), so the embedded Redis cannot start. Stop it, or set KENPIN_EMBEDDED_REDIS_PORT to a "
                "free port (or REDIS_URL to use that Redis)."
            )
        self._say(f"A Redis left running by an earlier run of Kenpin holds port {port}; stopping it.")
        try:
            client.shutdown()
        except redis.ConnectionError:
            pass  # it closes the connection as it goes
        deadline = time.monotonic() + 15
        while _port_taken("127.0.0.1", port):
            if time.monotonic() > deadline:
                raise CommandError(f"The Redis left on port {port} did not stop; stop it by hand.")
            time.sleep(0.1)

    def _wait_for_redis(self, url: str):
        client = redis.Redis.from_url(url)
        deadline = time.monotonic() + 20
        while not self.stopping:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                self.supervisor.check()
                if time.monotonic() > deadline:
                    raise CommandError(f"Redis at {url} does not answer.") from None
                time.sleep(0.1)

    def _wait_for_web(self, host, port):
        deadline = time.monotonic() + 60
        while not self.stopping:
            self.supervisor.check()
            if _port_taken(host, port):
                return
            if time.monotonic() > deadline:
                raise CommandError(f"The web server did not start; see {settings.DATA_DIR / 'logs' / 'web.log'}.")
            time.sleep(0.2)

    def _wait_for_workers(self, names: set[str]):
        deadline = time.monotonic() + 120
        while not self.stopping:
            self.supervisor.check()
            ready = {name.split("@")[0] for reply in app.control.ping(timeout=1) for name in reply}
            if names <= ready:
                return
            if time.monotonic() > deadline:
                raise CommandError(f"The workers {', '.join(sorted(names - ready))} did not start; see their logs.")

    def _watch(self):
        while not self.stopping:
            self.supervisor.check()
            time.sleep(0.25)


def _port_taken(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _ensure_port_free(host: str, port: int, *, what: str, setting: str) -> None:
    if _port_taken(host, port):
        raise CommandError(
            f"Port {port} on {host} is taken by another program, so {what} cannot start. Stop that program, "
            f"or choose another port with {setting}."
        )
