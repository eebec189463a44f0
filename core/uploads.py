"""The size limit of one uploaded file (KENPIN_MAX_UPLOAD_BYTES), checked before it is read."""

from django.conf import settings

from core.errors import TooLarge


def check_upload_size(data: bytes) -> None:
    check_upload_length(len(data))


def check_upload_length(length: int) -> None:
    """TooLarge for a file of `length` bytes over the limit; callers check before reading it."""
    limit = settings.KENPIN_MAX_UPLOAD_BYTES
    if length > limit:
        raise TooLarge(
            # MB as the docs and settings count them (2**20 bytes): 50 MB, not "52 MB".
            f"The file is {length / 2**20:.1f} MB; the largest accepted is {limit / 2**20:.0f} MB.",
        )


def upload_read(*, file) -> bytes:
    """The bytes of an uploaded file (Django UploadedFile), refused before reading when too large.

    Checking the size first keeps a huge upload out of memory: only its temporary file exists.
    """
    check_upload_length(file.size)
    return file.read()
