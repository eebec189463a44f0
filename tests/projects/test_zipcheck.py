"""Zip bombs refused from the zip's directory, before anything is decompressed."""

import io
import struct
import time
import zipfile

import pytest

from core.errors import Invalid, TooLarge
from projects.importer import zip_import_run
from projects.imports import zip_import_start
from projects.models import Image, ZipImport
from tests.factories import image_bytes, make_project

pytestmark = pytest.mark.django_db


def overlapping_bomb(entries: int = 200, payload: bytes = b"\0" * (49 * 1024 * 1024)) -> bytes:
    """A zip of `entries` central-directory records that all point at one deflated `payload`:
    by default the 59 KB zip of the issue, 200 entries x 49 MB of zeros."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("normal/0.png", payload)
    data = buffer.getvalue()
    eocd = data.rindex(b"PK\x05\x06")
    cd_offset = struct.unpack("<I", data[eocd + 16 : eocd + 20])[0]
    record = data[cd_offset:eocd]
    name_length = struct.unpack("<H", record[28:30])[0]
    body = data[:cd_offset]
    directory = b"".join(
        record[:28] + struct.pack("<H", len(n)) + record[30:46] + n + record[46 + name_length :]
        for n in (f"normal/{i}.png".encode() for i in range(entries))
    )
    end = data[eocd : eocd + 8] + struct.pack("<HHII", entries, entries, len(directory), len(body)) + data[eocd + 20 :]
    return body + directory + end


def test_the_59_kb_bomb_is_refused_in_under_a_second_and_nothing_is_stored(user):
    project = make_project(owner=user)
    bomb = overlapping_bomb()
    assert len(bomb) < 80_000
    started = time.monotonic()
    with pytest.raises(TooLarge, match=r"would unpack to 9\.6 GB; import at most 4\.0 GB"):
        zip_import_start(project=project, file=io.BytesIO(bomb), user=user)
    assert time.monotonic() - started < 1
    assert Image.objects.count() == 0 and not ZipImport.objects.exists()


def test_entries_that_share_their_data_are_refused_even_under_the_size_limit(user):
    bomb = overlapping_bomb(entries=3, payload=image_bytes(width=320, height=240))
    with pytest.raises(Invalid, match="share their data"):
        zip_import_start(project=make_project(owner=user), file=io.BytesIO(bomb), user=user)


def test_an_entry_compressed_far_more_than_photos_are_is_refused(user):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("normal/a.bmp", b"\0" * (20 * 1024 * 1024))
    with pytest.raises(Invalid, match="compressed .* times"):
        zip_import_start(project=make_project(owner=user), file=buffer, user=user)


def test_too_many_entries_are_refused(user, monkeypatch):
    from projects import zipcheck

    monkeypatch.setattr(zipcheck, "ZIP_MAX_ENTRIES", 3)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i in range(4):
            archive.writestr(f"normal/{i}.png", image_bytes(seed=i))
    with pytest.raises(TooLarge, match="holds 4 entries; import at most 3"):
        zip_import_start(project=make_project(owner=user), file=buffer, user=user)


def test_entries_named_outside_the_zip_are_reported_and_the_others_imported(user):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("normal/good.png", image_bytes(seed=1))
        archive.writestr("../evil.png", image_bytes(seed=2))
        archive.writestr("normal/../../also.png", image_bytes(seed=3))
    job = zip_import_start(project=make_project(owner=user), file=buffer, user=user)
    zip_import_run(import_id=job.pk)
    job.refresh_from_db()
    assert [image.original_name for image in Image.objects.all()] == ["good.png"]
    assert [r["name"] for r in job.rejected] == ["../evil.png", "normal/../../also.png"]
    assert all("points outside the zip" in r["message"] for r in job.rejected)
