"""Errors that services raise for people: each has a stable `code` for the API and a `message`
that says what went wrong and what to do. Views show the message; the API returns
`{"error": code, "message": message}` with `status`."""


class KenpinError(Exception):
    status = 400
    code = "invalid"

    def __init__(self, message: str, *, code: str | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code


class Invalid(KenpinError):
    status = 400
    code = "invalid"


class NotFound(KenpinError):
    """A row named by the request that does not exist (or that the caller may not see)."""

    status = 404
    code = "not_found"


class Conflict(KenpinError):
    status = 409
    code = "conflict"


class TooLarge(KenpinError):
    status = 413
    code = "too_large"


class Unavailable(KenpinError):
    """Work that needs a worker which did not answer in time (for example no inference worker)."""

    status = 503
    code = "unavailable"
    retry_after = 5  # seconds, sent as Retry-After: a restarting worker or Redis is back by then


# Row ids are the database's 64-bit integers. A larger number matches no row on PostgreSQL but
# overflows SQLite, so services refuse it themselves and answer the same on both.
MAX_ID = 2**63 - 1


def id_in_range(value: int) -> bool:
    """Whether a number from a request can be a row id: positive and below 2⁶³."""
    return 0 < value <= MAX_ID


def ids_check(ids) -> None:
    """Raise Invalid when an id from a request is not a positive number below 2⁶³."""
    if not all(id_in_range(i) for i in ids):
        raise Invalid("A number in the request is too large (ids and numbers are below 2⁶³).", code="too_large")


INTERNAL_MESSAGE = (
    "Kenpin failed to answer because of an internal error, which it logged. Try again; if it fails "
    "again, report it with the web server's log."
)
