"""How one detect call travels to an inference worker and back, and survives that worker's death.

Plain Redis lists, not Celery: the web process pushes the call (a small JSON header, then the
photo's bytes) onto the `inference` queue's list (LPUSH) and waits on the call's own answer list
(BLPOP); one of the inference workers' detect threads pops it (BRPOP), *claims* it (SET NX of
its name), works it and pushes the answer. Celery's publish, delivery, acknowledgement and task
bookkeeping cost ~2.5 ms of CPU in the web process and ~6 ms in the worker per call, more than
the whole hand-off needs (docs/benchmarks.md, issue 15). Workers listen on the list of each of
their Celery queues named `inference` or `inference-…` (a dedicated pool; the tests' doomed
workers).

Every inference worker keeps a key alive in Redis while it lives (`worker_heartbeat`, refreshed
each second, gone 3 s after the process dies). So while it waits, the web process can tell a
slow worker from a dead one: when the worker holding the call is no longer alive (liveness is
per process: a worker restarted under the same Celery name is another holder), the call is sent
once more and another worker, or the same worker restarted, answers it, instead of the caller
waiting out its whole timeout. A copy of the call that arrives after another worker claimed it
does nothing, so no call is ever worked twice. A call that no worker has claimed after
UNHELD_SECONDS is sent once more as well: a worker killed between popping the call and claiming
it loses it without a trace.

Redis is the hand-off whatever the broker is (KENPIN_BROKER_URL may name RabbitMQ): the one
KENPIN_HANDOFF_REDIS_URL names, which persists nothing when `serve` embeds it.
"""

import functools
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

QUEUE = "inference"  # the Celery queue whose workers answer detect calls
ALIVE_MS = 3000  # a worker whose key is this old is dead (it refreshes it every BEAT_SECONDS)
BEAT_SECONDS = 1.0
POLL_SECONDS = 0.5  # how often a waiting caller looks at the worker holding its call
RESENDS = 1  # a call that kills its worker (a poison image) must not take every worker down
# A call no worker has claimed for this long is sent once more. Normally a worker claims it
# within milliseconds, or it waits its turn in the list, where a copy does no harm; but a worker
# killed between popping it (BRPOP removes it before anything records it) and claiming it loses
# it without a trace, and its caller waited the whole timeout (CI's 30.4 s recovery).
UNHELD_SECONDS = 3.0
WAIT_SECONDS = 1.0  # how long a worker's BRPOP blocks before it looks whether it should stop
# This process, as a holder of calls. A worker that `serve` restarts keeps its Celery name
# (inference@host) and beats within a second or two, before its predecessor's key expires: keyed by
# the name alone, a call the dead process held looked alive and waited out the whole timeout.
_PROCESS = uuid.uuid4().hex[:12]


_client_lock = threading.Lock()


@functools.cache
def _client() -> redis.Redis:
    return redis.Redis.from_url(settings.KENPIN_HANDOFF_REDIS_URL)


def client() -> redis.Redis:
    """One client (a thread-safe connection pool) per process, on the hand-off Redis.

    Made under a lock: functools.cache alone lets threads that miss it together each make a client,
    and keeps one. A client made by `from_url` closes its pool when it is garbage-collected, every
    connection of it, also those that other threads' pipelines are reading at that moment (a 500:
    `'NoneType' object has no attribute 'readline'` inside redis-py); a gunicorn worker's first
    calls do come together under concurrent load (docs/benchmarks.md, issue 15)."""
    with _client_lock:
        return _client()


def _key(call_id: str, part: str) -> str:
    return f"{settings.KENPIN_REDIS_PREFIX}detect:{call_id}:{part}"


def queue_key(queue: str) -> str:
    return f"{settings.KENPIN_REDIS_PREFIX}detect-queue:{queue}"


def detect_queues(queues) -> list[str]:
    """Of a worker's Celery queues, those whose detect lists it serves."""
    return sorted(q for q in queues if q == QUEUE or q.startswith(f"{QUEUE}-"))


def _alive_key(holder: str) -> str:
    return f"{settings.KENPIN_REDIS_PREFIX}inference-worker:{holder}"


def _holder(worker: str) -> str:
    """`worker` (a Celery worker name) in this process: what claims, holds and beats."""
    return f"{worker}/{_PROCESS}"


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


# Delete the claim only if the dead worker still holds it (a live one may have claimed it since).
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
# Claim the call (KEYS[1]) only while its caller still waits (KEYS[2] exists). The caller's key
# lives on Redis's one clock, so web and inference machines need not agree on the time.
_CLAIM = (
    "if redis.call('exists', KEYS[2]) == 0 then return false end "
    "return redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])"
)


def push(call_id: str, message: bytes, *, queue: str = QUEUE) -> None:
    """Put a call's message on `queue`'s list. The list expires when nothing was pushed for a
    whole timeout, so calls that no worker ever took do not stay in Redis."""
    with client().pipeline(transaction=False) as pipe:
        pipe.lpush(queue_key(queue), message)
        pipe.pexpire(queue_key(queue), _ms(settings.KENPIN_DETECT_TIMEOUT))
        pipe.execute()


def call(*, data: bytes, work: dict, timeout: float, send: Callable[[str, bytes], None] = push) -> dict | None:
    """Hand `data` and `work` (JSON-able: which model, its threshold) to an inference worker and
    wait for its answer (a JSON-able dict).

    `send(call_id, message)` puts the call's message on a queue (a test routes it elsewhere).
    Returns None when no worker answered within `timeout` seconds. Raises one of
    core.redis_errors.REDIS_UNREACHABLE when Redis cannot be reached (the caller answers 503).
    """
    r = client()
    call_id = uuid.uuid4().hex
    deadline = time.monotonic() + timeout
    claim_key, answer_key, waiting_key = _key(call_id, "claim"), _key(call_id, "answer"), _key(call_id, "waiting")
    header = json.dumps({"call_id": call_id, **work}).encode()
    message = header + b"\n" + data  # JSON never holds a raw newline
    answered = False
    try:
        # While this key lives the caller waits; a worker that takes the call after it is gone
        # drops it instead of working it late (the photo travels with the call, so nothing else
        # tells the worker). It outlives a caller that dies by at most the timeout.
        r.set(waiting_key, b"1", px=_ms(timeout))
        send(call_id, message)
        sent = time.monotonic()
        resends = 0
        unheld_resent = False
        while (left := deadline - time.monotonic()) > 0:
            # At least 10 ms: Redis reads a BLPOP timeout that rounds to 0 ms as "wait forever".
            item = r.blpop([answer_key], timeout=max(0.01, min(POLL_SECONDS, left)))
            if item is not None:
                answered = True
                return json.loads(item[1])
            holder = r.get(claim_key)
            if holder is None:
                if not unheld_resent and time.monotonic() - sent > UNHELD_SECONDS:
                    unheld_resent = True  # a copy that finds the call claimed does nothing
                    logger.warning("no inference worker holds detect call %s yet; sending it again", call_id)
                    send(call_id, message)
                continue
            if r.exists(_alive_key(holder.decode())):
                continue
            if resends >= RESENDS:
                continue  # a restarted worker may still take it from the list
            resends += 1
            logger.warning("inference worker %s died holding detect call %s; sending it again", holder, call_id)
            r.eval(_RELEASE, 1, claim_key, holder)
            send(call_id, message)
        return None
    finally:
        # An answered call leaves its keys to expire with the call's timeout (BLPOP took the answer
        # list's only item, and Redis removes an empty list): one round trip less per call, and a
        # copy of the call resent meanwhile still finds it claimed, so it is not worked again.
        if not answered:
            r.delete(waiting_key, claim_key, answer_key)


@dataclass(frozen=True)
class Call:
    call_id: str
    work: dict
    data: bytes
    received: float  # time.perf_counter() when the call came off the list


def worker_take(*, queues: list[str], worker: str) -> Call | None:
    """The next call on `queues`' lists, claimed for `worker`; None when none came within
    WAIT_SECONDS, or the one that came is not this worker's to do (another worker claimed it,
    or its caller has given up)."""
    r = client()
    item = r.brpop([queue_key(q) for q in queues], timeout=WAIT_SECONDS)
    if item is None:
        return None
    received = time.perf_counter()
    header, _, data = item[1].partition(b"\n")
    work = json.loads(header)
    call_id = work.pop("call_id")
    claim = (_key(call_id, "claim"), _key(call_id, "waiting"))
    if not r.eval(_CLAIM, 2, *claim, _holder(worker), _ms(settings.KENPIN_DETECT_TIMEOUT)):
        return None  # another worker claimed it, or its caller has given up
    return Call(call_id=call_id, work=work, data=data, received=received)


def worker_answer(*, call_id: str, answer: dict) -> None:
    key = _key(call_id, "answer")
    with client().pipeline(transaction=False) as pipe:
        pipe.rpush(key, json.dumps(answer))
        pipe.pexpire(key, _ms(settings.KENPIN_DETECT_TIMEOUT))  # nobody waits longer than this
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
