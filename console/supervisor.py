"""Keep a set of child processes running: what `manage.py serve` uses to run Kenpin on one machine.

A child that dies is started again after a back-off (0.5 s, then doubling up to 30 s), with a
line in serve's output that names it, how it ended and when it comes back. Only a child that
keeps failing fast (FAST_FAILURES_ALLOWED exits in a row, each within FAST_SECONDS of its start)
makes the supervisor give up, because restarting it again would only fill the log.

Children die with the supervisor, even when it is killed with SIGKILL and cannot stop them:
each child asks the kernel for SIGKILL when its parent dies (PR_SET_PDEATHSIG, which survives
exec). Their own children follow: gunicorn's workers stop when their parent changes, and
Celery's prefork children set PR_SET_PDEATHSIG themselves. The pids are also written to a
run file in the data folder, so that a supervisor started after an unclean stop finds and
stops whatever a previous run left (a child that was exec'ing when its parent died).

Plain Python, no Django, so that it can be tested and reused on its own.
"""

import ctypes
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

FAST_SECONDS = 10.0  # an exit sooner than this after the start counts as a fast failure
FAST_FAILURES_ALLOWED = 5
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0

_PR_SET_PDEATHSIG = 1


class GaveUp(Exception):
    """A child failed fast too many times in a row."""


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    """A preexec_fn: SIGKILL this child when the process that started it dies."""

    def preexec():
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        # The parent may have died between fork and prctl: then no signal would ever come.
        if os.getppid() != parent_pid:
            os._exit(1)

    return preexec


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


@dataclass
class Child:
    name: str
    args: list[str]
    log: Path
    env: dict | None = None
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    fast_failures: int = 0
    restarts: int = 0
    restart_at: float | None = None  # monotonic time of the next start, while waiting to restart
    history: list[str] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Supervisor:
    """Starts children, restarts those that die, and stops them all in reverse order.

    `say` receives each line meant for the person who started it (starts, exits, restarts).
    """

    def __init__(self, *, run_file: Path, cwd: Path, say: Callable[[str], None]):
        self.run_file = run_file
        self.cwd = cwd
        self.say = say
        self.children: list[Child] = []

    # --- Leftovers of a previous run ------------------------------------------------------------

    def clear_leftovers(self) -> list[int]:
        """Stop what a previous supervisor of this data folder left running; the pids stopped.

        Refuses (RuntimeError) while that supervisor itself still runs. A recorded pid is only
        killed while its command line is still the recorded one, so a reused pid is left alone.
        """
        try:
            previous = json.loads(self.run_file.read_text())
        except (OSError, ValueError):
            return []
        if _same_process(previous.get("pid", 0), previous.get("started")):
            raise RuntimeError(
                f"Kenpin is already running from this data folder (process {previous['pid']}); stop it first."
            )
        stopped = []
        for child in previous.get("children", []):
            pid = child.get("pid", 0)
            if _same_process(pid, child.get("started")):
                _kill_group(pid)
                stopped.append(pid)
        self.run_file.unlink(missing_ok=True)
        return stopped

    def _record(self) -> None:
        self.run_file.parent.mkdir(parents=True, exist_ok=True)
        children = [
            {"name": c.name, "pid": c.process.pid, "started": _started(c.process.pid)}
            for c in self.children
            if c.running
        ]
        tmp = self.run_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": os.getpid(), "started": _started(os.getpid()), "children": children}))
        tmp.replace(self.run_file)

    # --- Starting and watching ------------------------------------------------------------------

    def add(self, name: str, args: list[str], *, log: Path, env: dict | None = None) -> Child:
        child = Child(name=name, args=args, log=log, env=env)
        self.children.append(child)
        self._spawn(child)
        return child

    def _spawn(self, child: Child) -> None:
        child.log.parent.mkdir(parents=True, exist_ok=True)
        with child.log.open("ab") as log:
            # Own session: Ctrl-C in the terminal reaches only the supervisor, which stops the
            # children in order (web first, Redis last) instead of all at once.
            child.process = subprocess.Popen(
                child.args,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.cwd,
                env=child.env,
                preexec_fn=_die_with_parent(os.getpid()),
            )
        child.started_at = time.monotonic()
        child.restart_at = None
        self._record()

    def check(self) -> None:
        """Notice children that exited and restart those whose back-off has passed.

        Raises GaveUp for a child that failed fast FAST_FAILURES_ALLOWED times in a row.
        """
        now = time.monotonic()
        for child in self.children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    child.restarts += 1
                    self._spawn(child)
                    self.say(f"{child.name} started again (restart {child.restarts}).")
                continue
            if child.process is None or child.process.poll() is None:
                continue
            lived = now - child.started_at
            how = describe_exit(child.process.returncode)
            child.history.append(how)
            child.fast_failures = child.fast_failures + 1 if lived < FAST_SECONDS else 0
            if child.fast_failures >= FAST_FAILURES_ALLOWED:
                raise GaveUp(
                    f"{child.name} stopped {child.fast_failures} times in a row within {FAST_SECONDS:.0f} s of "
                    f"starting (last: {how}); giving up. See {child.log}."
                )
            delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** max(0, child.fast_failures - 1))
            child.restart_at = now + delay
            self.say(
                f"{child.name} stopped ({how}) after {lived:.1f} s; starting it again in {delay:g} s. See {child.log}."
            )

    def stop_all(self, *, timeout: float = 20) -> None:
        """SIGTERM each child's process group in reverse order, SIGKILL after `timeout`."""
        for child in reversed(self.children):
            child.restart_at = None
            process = child.process
            if process is None:
                continue
            if process.poll() is None:
                _signal_group(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    _signal_group(process.pid, signal.SIGKILL)
                    process.wait()
            # A group whose leader exited may still hold members (gunicorn workers, pool children).
            _signal_group(process.pid, signal.SIGKILL)
        self.run_file.unlink(missing_ok=True)


def _started(pid: int) -> int | None:
    """When a live process started (clock ticks after boot): with the pid, its identity.

    None for no such process, or a zombie (which holds nothing any more).
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ")".
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else int(fields[19])


def _same_process(pid: int, started: int | None) -> bool:
    """Whether `pid` is still the process that started at `started` (not one that reused the pid)."""
    return bool(pid) and started is not None and _started(pid) == started


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_group(pid: int) -> None:
    _signal_group(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _started(pid) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
