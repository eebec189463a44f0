"""How one detect call travels to an inference worker and back, and survives that worker's death.

The image's bytes do not travel in the task message: a JSON message with a 450 KB photo inside
cost ~20 ms more per call (kombu encodes a body again and copies it into its unacked set;
docs/benchmarks.md), so they wait in Redis under the call's id.

The web process puts the image's bytes in Redis under the call's id and sends a small task
message (`send`); the worker that takes the call *claims* it (SET NX of its name), reads the
image, and pushes its answer onto a list that the web process waits on (BLPOP). Every inference
worker keeps a key alive in Redis while it lives (`worker_heartbeat`, refreshed each second,
gone 3 s after the process dies). So while it waits, the web process can tell a slow worker
from a dead one: when the worker holding the call (claimed, or merely received and waiting its
turn) is no longer alive (liveness is per process: a worker restarted under the same Celery name
is another holder), the call is sent once more and another worker, or the same worker
restarted, answers it, instead of the caller waiting out its whole timeout. A copy of the call
that arrives after another worker claimed it does nothing, so no call is ever worked twice. A
call that no worker has noted as held after UNHELD_SECONDS is sent once more as well: a worker
killed while it was taking the message off the queue loses it without a trace.

Redis is the hand-off whatever the broker is (KENPIN_BROKER_URL may name RabbitMQ).
"""

import functools
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

ALIVE_MS = 3000  # a worker whose key is this old is dead (it refreshes it every BEAT_SECONDS)
BEAT_SECONDS = 1.0
POLL_SECONDS = 0.5  # how often a waiting caller looks at the worker holding its call
RESENDS = 1  # a call that kills its worker (a poison image) must not take every worker down
# A call no worker has noted as held for this long is sent once more. Normally a worker notes it
# within milliseconds, or it waits its turn in the queue, where a copy does no harm; but a worker
# killed between popping the message from Redis and noting it (kombu's BRPOP removes it before
# anything records it) loses it without a trace, and its caller waited the whole timeout (CI's
# 30.4 s recovery after the per-process fix).
UNHELD_SECONDS = 3.0
# This process, as a holder of calls. A worker that `serve` restarts keeps its Celery name
# (inference@host) and beats within a second or two, before its predecessor's key expires: keyed by
# the name alone, a call the dead process held looked alive and waited out the whole timeout.
_PROCESS = uuid.uuid4().hex[:12]


@functools.cache
def client() -> redis.Redis:
    """One client (a thread-safe connection pool) per process, on the hand-off Redis."""
    return redis.Redis.from_url(settings.REDIS_URL)


def _key(call_id: str, part: str) -> str:
    return f"{settings.KENPIN_REDIS_PREFIX}detect:{call_id}:{part}"


def _alive_key(holder: str) -> str:
    return f"{settings.KENPIN_REDIS_PREFIX}inference-worker:{holder}"


def _holder(worker: str) -> str:
    """`worker` (a Celery worker name) in this process: what claims, holds and beats."""
    return f"{worker}/{_PROCESS}"


# Delete the claim only if the dead worker still holds it (a live one may have claimed it since).
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


def call(*, data: bytes, timeout: float, send: Callable[[str, float], None]) -> dict | None:
    """Hand `data` to an inference worker and wait for its answer (a JSON-able dict).

    `send(call_id, expires)` publishes the task message for the call. Returns None when no
    worker answered within `timeout` seconds. Raises one of core.redis_errors.REDIS_UNREACHABLE
    when Redis cannot be reached (the caller answers 503).
    """
    r = client()
    call_id = uuid.uuid4().hex
    deadline = time.monotonic() + timeout
    keys = [_key(call_id, part) for part in ("image", "claim", "held", "answer")]
    image_key, claim_key, held_key, answer_key = keys
    r.set(image_key, data, px=max(1, int(timeout * 1000)))
    try:
        send(call_id, timeout)
        sent = time.monotonic()
        resends = 0
        unheld_resent = False
        while (left := deadline - time.monotonic()) > 0:
            # At least 10 ms: Redis reads a BLPOP timeout that rounds to 0 ms as "wait forever".
            item = r.blpop([answer_key], timeout=max(0.01, min(POLL_SECONDS, left)))
            if item is not None:
                return json.loads(item[1])
            holder = r.get(claim_key) or r.get(held_key)
            if holder is None:
                if not unheld_resent and time.monotonic() - sent > UNHELD_SECONDS:
                    unheld_resent = True  # a copy that finds the call claimed does nothing
                    logger.warning("no inference worker holds detect call %s yet; sending it again", call_id)
                    send(call_id, max(0.1, deadline - time.monotonic()))
                continue
            if r.exists(_alive_key(holder.decode())):
                continue
            if resends >= RESENDS:
                continue  # a restarted worker may still take it from the queue
            resends += 1
            logger.warning("inference worker %s died holding detect call %s; sending it again", holder, call_id)
            r.eval(_RELEASE, 1, claim_key, holder)
            r.delete(held_key)
            send(call_id, max(0.1, deadline - time.monotonic()))
        return None
    finally:
        r.delete(*keys)


def worker_received(*, call_id: str, worker: str, timeout: float) -> None:
    """Note that `worker` holds the call's message (prefetched, waiting for a free thread)."""
    client().set(_key(call_id, "held"), _holder(worker), px=max(1, int(timeout * 1000)))


def worker_take(*, call_id: str, worker: str) -> bytes | None:
    """Claim the call for `worker`; its image, or None when there is nothing to do (another
    worker claimed it, or the caller gave up and its image expired)."""
    r = client()
    if not r.set(
        _key(call_id, "claim"), _holder(worker), nx=True, px=max(1, int(settings.KENPIN_DETECT_TIMEOUT * 1000))
    ):
        return None
    return r.get(_key(call_id, "image"))


def worker_answer(*, call_id: str, answer: dict) -> None:
    r = client()
    key = _key(call_id, "answer")
    with r.pipeline() as pipe:
        pipe.rpush(key, json.dumps(answer))
        pipe.pexpire(key, max(1, int(settings.KENPIN_DETECT_TIMEOUT * 1000)))  # nobody waits longer than this
        pipe.delete(_key(call_id, "image"))
        pipe.execute()


def worker_heartbeat(worker: str, stop: threading.Event | None = None) -> threading.Thread:
    """Keep `worker`'s alive key in this process fresh from a daemon thread, for as long as the
    process lives (or until `stop` is set)."""
    stop = stop or threading.Event()

    def beat():
        while not stop.is_set():
            try:
                client().set(_alive_key(_holder(worker)), b"1", px=ALIVE_MS)
            except redis.RedisError:
                pass  # Redis restarting: the next beat sets it again
            stop.wait(BEAT_SECONDS)

    thread = threading.Thread(target=beat, name="kenpin-alive", daemon=True)
    thread.start()
    return thread
