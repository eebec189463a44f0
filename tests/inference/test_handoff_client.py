"""inference.handoff.client(): one client per process, however its first calls arrive."""

import threading
import time

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
