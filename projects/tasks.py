from celery import shared_task
from django.db import close_old_connections

from core.files import storage_delete_prefix
from projects import importer
from projects.models import project_files_prefix


@shared_task(acks_late=True)
def project_delete_files(project_id: int) -> int:
    """Remove a deleted project's stored files. Its rows are gone, so nothing refers to them;
    a redelivered copy finds fewer files (or none) and deletes what is left."""
    return storage_delete_prefix(project_files_prefix(project_id))


@shared_task(acks_late=True)
def import_zip(import_id: int) -> None:
    try:
        importer.zip_import_run(import_id=import_id)
    finally:
        close_old_connections()  # an import may take minutes: its connection may have gone stale


@shared_task
def sweep_stale_zip_imports() -> int:
    # A queued import whose message may be lost is sent again (claiming makes a copy harmless).
    for import_id in importer.zip_imports_queued_too_long():
        import_zip.delay(import_id)
    return importer.zip_imports_sweep_stale()
