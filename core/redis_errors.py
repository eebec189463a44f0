"""Redis out of reach, as redis-py reports it: one definition for every caller that answers
differently when Redis does not (the throttle counts nothing, detect answers 503)."""

import redis

# Besides its own errors, redis-py 8 lets a ValueError ("I/O operation on closed file") or an
# OSError escape when a new connection's handshake times out and the connection is closed under
# it: seen as 500s at the start of 8 detect clients while the embedded Redis rewrote its
# append-only file (docs/benchmarks.md, issue 15).
REDIS_UNREACHABLE = (redis.RedisError, OSError, ValueError)
