"""console.supervisor with real processes: restarts with back-off, giving up on fast failures,
children that die with their parent, and leftovers of an earlier run stopped."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from console import supervisor
from console.supervisor import GaveUp, Supervisor
from tests.served import process_alive, wait_for


@pytest.fixture
def lines():
    return []


@pytest.fixture
def sup(tmp_path, lines):
    s = Supervisor(run_file=tmp_path / "run" / "serve.json", cwd=tmp_path, say=lines.append)
    yield s
    s.stop_all(timeout=5)


def test_a_child_that_dies_is_started_again_with_a_line_that_says_so(sup, lines, tmp_path):
    child = sup.add("sleeper", ["sleep", "60"], log=tmp_path / "sleeper.log")
    first = child.process.pid
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: sup.check() or child.restarts == 1, 10, "the child started again", interval=0.05)
    assert child.running and child.process.pid != first
    assert lines[0].startswith("sleeper stopped (killed by SIGKILL) after ") and "again in 0.5 s" in lines[0]
    assert lines[1] == "sleeper started again (restart 1)."
    assert json.loads(sup.run_file.read_text())["children"][0]["pid"] == child.process.pid


def test_a_child_that_keeps_failing_fast_makes_it_give_up_after_backing_off(sup, lines, tmp_path, monkeypatch):
    monkeypatch.setattr(supervisor, "BACKOFF_FIRST", 0.01)
    sup.add("broken", [sys.executable, "-c", "raise SystemExit(3)"], log=tmp_path / "broken.log")
    with pytest.raises(GaveUp, match=r"broken stopped 5 times in a row within 10 s of starting \(last: exit code 3\)"):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            sup.check()
            time.sleep(0.01)
    delays = [float(line.split("again in ")[1].split(" s")[0]) for line in lines if "again in" in line]
    assert delays == [0.01, 0.02, 0.04, 0.08]


def test_children_die_with_their_parent_even_when_it_is_killed(tmp_path):
    script = (
        "import sys, time; from pathlib import Path; from console.supervisor import Supervisor; "
        f"s = Supervisor(run_file=Path({str(tmp_path / 'run.json')!r}), cwd=Path('.'), say=print); "
        f"s.add('sleeper', ['sleep', '600'], log=Path({str(tmp_path / 'sleeper.log')!r})); "
        "print('ready', flush=True); time.sleep(600)"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout.readline().strip() == "ready"
        child = json.loads((tmp_path / "run.json").read_text())["children"][0]["pid"]
        assert process_alive(child)
        parent.kill()
        parent.wait(10)
        wait_for(lambda: not process_alive(child), 5, "the child died with its parent")
    finally:
        parent.kill()


def test_processes_left_by_an_earlier_run_are_stopped_and_a_running_one_is_refused(sup, tmp_path):
    leftover = subprocess.Popen(["sleep", "600"], start_new_session=True)
    try:
        # An earlier supervisor (long dead: pid 0 is nobody) left this child running.
        sup.run_file.parent.mkdir(parents=True)
        record = {
            "pid": 0,
            "started": None,
            "children": [{"pid": leftover.pid, "started": supervisor._started(leftover.pid)}],
        }
        sup.run_file.write_text(json.dumps(record))
        assert sup.clear_leftovers() == [leftover.pid]
        assert leftover.wait(5) == -signal.SIGKILL

        # A supervisor that still runs (this test process) is not stopped: starting is refused.
        sup.run_file.write_text(json.dumps({"pid": os.getpid(), "started": supervisor._started(os.getpid())}))
        with pytest.raises(RuntimeError, match=f"already running from this data folder \\(process {os.getpid()}\\)"):
            sup.clear_leftovers()
    finally:
        leftover.kill()
        leftover.wait()
