"""Zip imports: checked and stored by the request, imported by a worker with progress, each bad
entry reported by name; a second delivery imports nothing twice, a dead worker leaves a clear
state. The worker's function is called directly here, then through real worker processes."""

import io
import time
import zipfile
from datetime import timedelta

import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.utils import timezone
from PIL import Image as PILImage

from core.errors import Invalid
from projects import imports
from projects.importer import zip_import_run, zip_imports_queued_too_long, zip_imports_sweep_stale
from projects.imports import zip_import_start
from projects.models import Image, ImportStatus, ZipImport
from projects.tasks import import_zip, sweep_stale_zip_imports
from tests.factories import image_bytes, make_project
from tests.workers import Worker


def zipped(entries: dict[str, bytes]) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    buffer.seek(0)
    return buffer


def cookies_zip() -> io.BytesIO:
    return zipped(
        {
            "cookies/normal/a.png": image_bytes(),
            "cookies/normal/b.png": image_bytes(),
            "cookies/anomaly/c.png": image_bytes(width=64, height=48),
            "cookies/mask/c.png": image_bytes(width=64, height=48, mode="L"),
            "cookies/anomaly/readme.txt": b"not an image",
            "loose.png": image_bytes(),
            "__MACOSX/._a.png": b"junk",
        }
    )


@pytest.mark.django_db
def test_a_zip_import_labels_by_folder_and_reports_bad_files_by_name(user):
    project = make_project(owner=user)
    job = zip_import_start(project=project, file=cookies_zip(), user=user, name="cookies.zip")
    assert (job.status, job.total, job.original_name) == (ImportStatus.QUEUED, 5, "cookies.zip")
    assert not Image.objects.exists()  # the request only stores the zip

    zip_import_run(import_id=job.pk)

    job.refresh_from_db()
    assert job.status == ImportStatus.COMPLETE and job.progress == 100
    assert (job.added_normal, job.added_anomaly, job.added_unlabeled, job.done) == (2, 1, 1, 5)
    labels = sorted((i.original_name, i.label, bool(i.mask)) for i in Image.objects.all())
    assert labels == [
        ("a.png", "normal", False),
        ("b.png", "normal", False),
        ("c.png", "anomaly", True),
        ("loose.png", "unlabeled", False),
    ]
    assert [r["name"] for r in job.rejected] == ["cookies/anomaly/readme.txt"]
    assert "not an image" in job.rejected[0]["message"].lower()
    assert job.status_message.startswith("4 of 5 files of the zip added.")


@pytest.mark.django_db
def test_the_stored_zip_is_read_through_storage_and_deleted_once_the_import_ends(user):
    job = zip_import_start(project=make_project(owner=user), file=cookies_zip(), user=user)
    stored = job.file.name
    assert stored.startswith(f"projects/{job.project_id}/imports/") and default_storage.exists(stored)
    zip_import_run(import_id=job.pk)
    job.refresh_from_db()
    assert not job.file and not default_storage.exists(stored)


@pytest.mark.django_db
def test_a_file_that_is_not_a_zip_is_refused_at_once_and_nothing_is_stored(user):
    project = make_project(owner=user)
    with pytest.raises(Invalid, match="not a zip archive"):
        zip_import_start(project=project, file=io.BytesIO(b"nope"), user=user)
    assert not ZipImport.objects.exists()
    assert not default_storage.exists(f"projects/{project.pk}/imports")


@pytest.mark.django_db
def test_a_second_delivery_of_a_finished_import_adds_and_reports_nothing_more(user):
    job = zip_import_start(project=make_project(owner=user), file=cookies_zip(), user=user)
    zip_import_run(import_id=job.pk)
    job.refresh_from_db()
    zip_import_run(import_id=job.pk)
    again = ZipImport.objects.get(pk=job.pk)
    assert (again.status, again.added, again.rejected, again.ended_at) == (
        job.status,
        job.added,
        job.rejected,
        job.ended_at,
    )
    assert Image.objects.count() == 4


@pytest.mark.django_db
def test_a_redelivered_import_whose_worker_died_is_reported_failed_and_not_run_again(user, settings):
    job = zip_import_start(project=make_project(owner=user), file=cookies_zip(), user=user)
    stale = timezone.now() - timedelta(seconds=settings.KENPIN_STALE_AFTER + 5)
    ZipImport.objects.filter(pk=job.pk).update(status=ImportStatus.IMPORTING, started_at=stale, heartbeat_at=stale)

    zip_import_run(import_id=job.pk)

    job.refresh_from_db()
    assert job.status == ImportStatus.FAILED and "has not reported" in job.status_message
    assert "import the zip again" in job.status_message
    assert not Image.objects.exists() and not job.file


@pytest.mark.django_db
def test_a_redelivered_import_whose_worker_is_alive_is_left_to_it(user):
    job = zip_import_start(project=make_project(owner=user), file=cookies_zip(), user=user)
    now = timezone.now()
    ZipImport.objects.filter(pk=job.pk).update(status=ImportStatus.IMPORTING, started_at=now, heartbeat_at=now)
    zip_import_run(import_id=job.pk)
    assert ZipImport.objects.get(pk=job.pk).status == ImportStatus.IMPORTING
    assert not Image.objects.exists()


@pytest.mark.django_db
def test_the_sweep_fails_silent_imports_and_finds_lost_queued_ones(user, settings):
    project = make_project(owner=user)
    silent = zip_import_start(project=project, file=cookies_zip(), user=user)
    lost = zip_import_start(project=project, file=cookies_zip(), user=user)
    fresh = zip_import_start(project=project, file=cookies_zip(), user=user)
    old = timezone.now() - timedelta(seconds=settings.KENPIN_STALE_AFTER + 5)
    ZipImport.objects.filter(pk=silent.pk).update(status=ImportStatus.IMPORTING, heartbeat_at=old)
    ZipImport.objects.filter(pk=lost.pk).update(created_at=old)

    assert zip_imports_sweep_stale() == 1
    assert zip_imports_queued_too_long() == [lost.pk]
    assert ZipImport.objects.get(pk=silent.pk).status == ImportStatus.FAILED
    assert not default_storage.exists(silent.file.name)
    assert ZipImport.objects.get(pk=fresh.pk).status == ImportStatus.QUEUED


# --- Through real workers ---------------------------------------------------------------------


def wait_final(job_id: int, worker, timeout: float = 60) -> ZipImport:
    deadline = time.monotonic() + timeout
    while not (job := ZipImport.objects.get(pk=job_id)).is_final:
        assert time.monotonic() < deadline, f"the import stayed {job.status}:\n{worker.tail()}"
        time.sleep(0.1)
    return job


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_a_zip_delivered_twice_to_a_worker_is_imported_once(celery_worker, user):
    project = make_project(owner=user)
    archive = zipped({f"normal/{i}.png": image_bytes(width=320, height=240) for i in range(12)})
    job = zip_import_start(project=project, file=archive, user=user)  # queued after commit
    import_zip.delay(job.pk)  # and a second copy, as a broker may redeliver; the worker runs two at once

    job = wait_final(job.pk, celery_worker)
    assert (job.status, job.added_normal, job.rejected) == (ImportStatus.COMPLETE, 12, [])
    assert Image.objects.filter(project=project).count() == 12


def large_photos_zip(count: int) -> io.BytesIO:
    """`count` different 1600x1200 JPEGs: each takes the worker tens of milliseconds to decode."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, size=(1200, 1600, 3), dtype=np.uint8)
    entries = {}
    for i in range(count):
        base[0, :8] = i % 256, i // 256, 7  # a different first row: a different image
        out = io.BytesIO()
        PILImage.fromarray(base).save(out, format="JPEG", quality=90)
        entries[f"normal/{i}.jpg"] = out.getvalue()
    return zipped(entries)


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_a_worker_killed_mid_import_leaves_a_failed_import_that_says_what_to_do(user, settings, monkeypatch):
    # A worker of its own, on a queue of its own, so that no other worker of the run takes the job.
    queue = f"kill-test-{user.pk}-{time.monotonic_ns()}"
    monkeypatch.setattr(imports, "import_zip", type("Held", (), {"delay": staticmethod(lambda pk: None)}))
    job = zip_import_start(project=make_project(owner=user), file=large_photos_zip(80), user=user)
    worker = Worker(queues=queue, concurrency=1)
    try:
        worker.wait_ready()
        import_zip.apply_async((job.pk,), queue=queue)
        deadline = time.monotonic() + 90
        while (row := ZipImport.objects.get(pk=job.pk)).done == 0:
            assert time.monotonic() < deadline and not row.is_final, f"{row.status}:\n{worker.tail()}"
            time.sleep(0.05)
        worker.kill()
    finally:
        worker.stop()
    killed = ZipImport.objects.get(pk=job.pk)
    assert killed.status == ImportStatus.IMPORTING and 0 < killed.done < killed.total == 80

    settings.KENPIN_STALE_AFTER = 1
    time.sleep(1.5)
    assert sweep_stale_zip_imports() == 1

    failed = ZipImport.objects.get(pk=job.pk)
    assert failed.status == ImportStatus.FAILED and failed.ended_at
    assert "has not reported" in failed.status_message and "import the zip again" in failed.status_message
    stored = Image.objects.filter(project=job.project).count()
    assert killed.added <= stored < 80  # what was added stays; the report counts at least that much
    assert not default_storage.exists(job.file.name)

    zip_import_run(import_id=job.pk)  # the message, redelivered once a worker is back
    assert ZipImport.objects.get(pk=job.pk).status == ImportStatus.FAILED
    assert Image.objects.filter(project=job.project).count() == stored
