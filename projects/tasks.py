from celery import shared_task

from core.files import storage_delete_prefix
from projects.models import project_files_prefix


@shared_task(acks_late=True)
def project_delete_files(project_id: int) -> int:
    """Remove a deleted project's stored files. Its rows are gone, so nothing refers to them;
    a redelivered copy finds fewer files (or none) and deletes what is left."""
    return storage_delete_prefix(project_files_prefix(project_id))
