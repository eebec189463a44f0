"""gunicorn's settings for Kenpin's web server (`gunicorn -c python:console.gunicorn console.wsgi`).

`manage.py serve` and the systemd unit use it; --bind and --workers come from the command line.
"""

import threading

from console.checks import shared_setup_problems

worker_class = "gthread"
threads = 8
# A training start or a zip import may take a while; detect calls are bounded by
# KENPIN_DETECT_TIMEOUT (30 s) well below this.
timeout = 120
graceful_timeout = 30
# Production clients keep one connection (docs/api.md): hold it for a minute of quiet between
# calls instead of gunicorn's 2 s, after which a client's next request races the server's close.
keepalive = 75
accesslog = "-"

_current = threading.local()


def pre_request(worker, req):
    """Remember the request being served on this thread, for console.edge.close_connection."""
    _current.req = req


def post_request(worker, req, environ, resp):
    _current.req = None


def close_after_response() -> bool:
    """Make gunicorn answer the current request with `Connection: close` and close afterwards.

    For a request whose body will not be read (refused by its length, or too large to drain):
    the client is told in the response itself, instead of finding the connection closed
    when it sends its next request. False outside gunicorn.
    """
    req = getattr(_current, "req", None)
    if req is None:
        return False
    # gunicorn decides from the first Connection header the client sent: put ours first.
    req.headers[:] = [("CONNECTION", "close")] + [(k, v) for k, v in req.headers if k != "CONNECTION"]
    return True


def on_starting(server):
    for problem in shared_setup_problems():
        server.log.warning("Warning: %s", problem)
