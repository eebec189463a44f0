"""inference.handoff without workers: one client per process, however its first calls arrive,
and what an answered call leaves behind."""

import threading
import time
import uuid

import redis

from inference import handoff


def test_threads_that_ask_for_the_client_together_share_one(monkeypatch):
    """A second client would close its pool, connections in use included, when it is collected:
    the 500s of a gunicorn worker's first concurrent calls (docs/benchmarks.md, issue 15)."""
    made = []
    from_url = redis.Redis.from_url

    def slow_from_url(url, **kwargs):
        time.sleep(0.05)  # the other threads' first calls arrive while this one makes the client
        made.append(from_url(url, **kwargs))
        return made[-1]

    monkeypatch.setattr(redis.Redis, "from_url", slow_from_url)
    handoff._client.cache_clear()
    together = threading.Barrier(8)
    got = []

    def ask():
        together.wait()
        got.append(handoff.client())

    threads = [threading.Thread(target=ask) for _ in range(8)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        handoff._client.cache_clear()
    assert len(made) == 1 and len(got) == 8 and all(c is made[0] for c in got)


def test_an_answered_call_costs_no_clean_up_and_its_copy_is_not_worked_again(monkeypatch):
    """Its keys expire with the call's timeout, so the caller deletes nothing once answered (one
    Redis round trip less per call); a copy of the call that was sent again meanwhile (unclaimed
    for a while, or its holder thought dead) still finds it claimed."""
    queue = f"inference-test-{uuid.uuid4().hex[:8]}"
    messages, deleted = [], []

    def send(call_id, message):
        messages.append(message)
        handoff.push(call_id, message, queue=queue)

    def answer_one():
        call = None
        while call is None:
            call = handoff.worker_take(queues=[queue], worker="first")
        handoff.worker_answer(call_id=call.call_id, answer={"is_anomalous": False})

    delete = redis.Redis.delete
    monkeypatch.setattr(redis.Redis, "delete", lambda self, *keys: deleted.append(keys) or delete(self, *keys))
    worker = threading.Thread(target=answer_one, daemon=True)
    worker.start()
    assert handoff.call(data=b"photo", work={}, timeout=5, send=send) == {"is_anomalous": False}
    worker.join()
    assert deleted == []
    handoff.push("copy", messages[0], queue=queue)  # a copy of the call, taken after its answer
    assert handoff.worker_take(queues=[queue], worker="second") is None
