"""inference.handoff with real workers: a detect call outlives the death of the worker holding it."""

import threading
import time
import types
import uuid

import pytest
from django.conf import settings

from inference import handoff
from tests.inference.test_api import UNSEEN_ANOMALY, hosted, owner_api  # noqa: F401  (fixtures)
from tests.workers import Worker

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def work(mv) -> dict:
    return {"model_version": mv.pk, "weights": mv.weights_file.name, "threshold": mv.threshold}


def test_a_call_whose_worker_dies_is_answered_by_another_worker_long_before_the_timeout(hosted, celery_worker):  # noqa: F811
    """kill -9 the worker that took the call: the caller sees it dead within seconds and sends
    the call again, which the session's worker answers."""
    queue = f"inference-doomed-{uuid.uuid4().hex[:8]}"
    doomed = Worker(queues=queue, concurrency=1).wait_ready()
    sent = []

    def kill_when_held(call_id):
        claim = f"{settings.KENPIN_REDIS_PREFIX}detect:{call_id}:claim"
        deadline = time.monotonic() + 20
        while not handoff.client().exists(claim):
            assert time.monotonic() < deadline, doomed.tail()
            time.sleep(0.005)
        doomed.kill()

    def send(call_id, message):
        # The first copy goes where only the doomed worker listens; a copy sent again, anywhere.
        sent.append(call_id)
        if len(sent) == 1:
            threading.Thread(target=kill_when_held, args=(call_id,), daemon=True).start()
            handoff.push(call_id, message, queue=queue)
        else:
            handoff.push(call_id, message)

    started = time.monotonic()
    try:
        answer = handoff.call(data=UNSEEN_ANOMALY[0].read_bytes(), work=work(hosted), timeout=30, send=send)
    finally:
        doomed.stop()
    elapsed = time.monotonic() - started
    assert answer is not None and "is_anomalous" in answer, answer
    assert len(sent) == 2 and sent[0] == sent[1]
    assert doomed.process.returncode == -9
    assert elapsed < 10, f"answered after {elapsed:.1f} s"


def test_a_worker_restarted_under_the_same_name_does_not_pass_for_the_dead_one(hosted, celery_worker):  # noqa: F811
    """`serve` restarts a killed inference worker under its Celery name within a second or two,
    before the dead process's alive key expires: the call it held must still be sent again, not
    wait out the timeout because someone beats under that name (the 30.2 s recovery of CI)."""
    queue = f"inference-doomed-{uuid.uuid4().hex[:8]}"
    doomed = Worker(queues=queue, concurrency=1).wait_ready()
    successor = threading.Event()  # set to stop the successor's beat
    sent = []

    def kill_when_held_and_restart(call_id):
        claim = f"{settings.KENPIN_REDIS_PREFIX}detect:{call_id}:claim"
        deadline = time.monotonic() + 20
        while not handoff.client().exists(claim):
            assert time.monotonic() < deadline, doomed.tail()
            time.sleep(0.005)
        doomed.kill()
        handoff.worker_heartbeat(doomed.name, stop=successor)  # the successor, alive at once

    def send(call_id, message):
        sent.append(call_id)
        if len(sent) == 1:
            threading.Thread(target=kill_when_held_and_restart, args=(call_id,), daemon=True).start()
            handoff.push(call_id, message, queue=queue)
        else:
            handoff.push(call_id, message)

    started = time.monotonic()
    try:
        answer = handoff.call(data=UNSEEN_ANOMALY[0].read_bytes(), work=work(hosted), timeout=20, send=send)
    finally:
        successor.set()
        doomed.stop()
    elapsed = time.monotonic() - started
    assert answer is not None and "is_anomalous" in answer, answer
    assert len(sent) == 2
    assert elapsed < 10, f"answered after {elapsed:.1f} s"


def test_a_call_lost_on_its_way_to_a_worker_is_sent_again_long_before_the_timeout(hosted, celery_worker):  # noqa: F811
    """A worker killed between popping the call from its list and claiming it loses the call:
    nobody holds it. Here the first message is simply never pushed."""
    sent = []

    def send(call_id, message):
        sent.append(time.monotonic())
        if len(sent) > 1:
            handoff.push(call_id, message)

    started = time.monotonic()
    answer = handoff.call(data=UNSEEN_ANOMALY[0].read_bytes(), work=work(hosted), timeout=20, send=send)
    assert answer is not None and "is_anomalous" in answer, answer
    assert len(sent) == 2 and sent[1] - started >= handoff.UNHELD_SECONDS
    assert time.monotonic() - started < handoff.UNHELD_SECONDS + 5


def test_a_call_whose_caller_gave_up_is_dropped_not_worked_late(hosted, celery_worker):  # noqa: F811
    """The photo travels with the call, so the worker must learn from the call itself that its
    caller is gone (a list that grew while no worker ran, or a resend that arrives too late)."""
    late = []

    def send(call_id, message):
        late.append(call_id)
        timer = threading.Timer(0.5, handoff.push, args=(call_id, message))  # after the caller's timeout
        timer.daemon = True
        timer.start()

    assert handoff.call(data=UNSEEN_ANOMALY[0].read_bytes(), work=work(hosted), timeout=0.3, send=send) is None
    time.sleep(1.5)  # the worker has popped it by now
    claim = f"{settings.KENPIN_REDIS_PREFIX}detect:{late[0]}:claim"
    assert not handoff.client().exists(claim), "the worker claimed a call whose caller had given up"
    assert not handoff.client().llen(handoff.queue_key(handoff.QUEUE))


def test_a_call_is_answered_when_the_callers_clock_disagrees_with_the_workers(hosted, celery_worker, monkeypatch):  # noqa: F811
    """Web and inference machines with clocks an hour apart: whether the caller still waits is
    Redis's to say, not a time the web process wrote."""
    skewed = types.SimpleNamespace(**{name: getattr(time, name) for name in ("monotonic", "perf_counter", "sleep")})
    skewed.time = lambda: time.time() - 3600
    monkeypatch.setattr(handoff, "time", skewed)
    answer = handoff.call(data=UNSEEN_ANOMALY[0].read_bytes(), work=work(hosted), timeout=20)
    assert answer is not None and "is_anomalous" in answer, answer
