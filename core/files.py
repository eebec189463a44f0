"""Stored files (default_storage: local disk or S3): serving them after an access check, and
deleting them once the rows that referenced them are gone."""

import mimetypes
import shutil
from pathlib import Path

from django.core.files.storage import FileSystemStorage, default_storage
from django.db import transaction
from django.http import FileResponse, Http404


def storage_file_response(field, *, download_name: str = "") -> FileResponse:
    """Stream a stored file (image, thumbnail, heatmap) to a client that passed an access check.

    Callers check access first; this only turns a FieldFile into a response. Files are served
    through views, never from a public media URL, so that per-project access applies to them.
    """
    if not field:
        raise Http404
    try:
        handle = field.open("rb")
    except FileNotFoundError:
        raise Http404 from None
    content_type = mimetypes.guess_type(field.name)[0] or "application/octet-stream"
    response = FileResponse(handle, content_type=content_type, filename=download_name or None)
    response["Cache-Control"] = "private, max-age=3600"
    response["X-Content-Type-Options"] = "nosniff"
    return response


def storage_delete_on_commit(names: list[str]) -> None:
    """Delete stored files once the rows that referenced them are gone for good.

    After commit, so that a rolled-back deletion never leaves rows pointing at missing files.
    """
    names = [n for n in names if n]

    def delete():
        for name in names:
            default_storage.delete(name)

    transaction.on_commit(delete)


def storage_delete_prefix(prefix: str) -> int:
    """Delete every stored file under `prefix` (a folder such as "projects/12/"); returns how many.

    Lists and deletes through the storage API, so that it works on local disk and on S3 alike
    (where folders are only key prefixes). On local disk the emptied folders are removed too.
    """
    prefix = prefix.rstrip("/")
    deleted = 0
    folders = [prefix]
    while folders:
        folder = folders.pop()
        try:
            subfolders, files = default_storage.listdir(folder)
        except FileNotFoundError:
            continue  # nothing was ever stored there, or an earlier run removed it
        folders += [f"{folder}/{sub}" for sub in subfolders]
        for name in files:
            default_storage.delete(f"{folder}/{name}")
            deleted += 1
    if isinstance(default_storage, FileSystemStorage):
        # Local disk keeps empty folders that S3 does not have; only folders are left by now.
        shutil.rmtree(Path(default_storage.location) / prefix, ignore_errors=True)
    return deleted
