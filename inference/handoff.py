"""The bytes of an image to detect, handed from the web process to an inference worker through
Redis: the detect task's JSON message carries only their key (inference.detection says why)."""

import functools
import uuid

import redis
from django.conf import settings


@functools.cache
def _redis():
    """One client (a thread-safe connection pool) per process, on the broker's Redis."""
    return redis.Redis.from_url(settings.REDIS_URL)


def image_put(*, data: bytes, timeout: float) -> str:
    """Keep `data` for at most `timeout` seconds; returns the key a worker takes it with."""
    key = f"{settings.KENPIN_REDIS_PREFIX}detect:{uuid.uuid4().hex}"
    _redis().set(key, data, px=max(1, int(timeout * 1000)))
    return key


def image_take(*, key: str) -> bytes | None:
    """The image's bytes, removed from Redis; None when they expired (the caller gave up)."""
    return _redis().getdel(key)


def image_discard(*, key: str) -> None:
    _redis().delete(key)
