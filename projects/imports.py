"""Importing a zip of images whose folders name their labels, as Lookout for Vision's S3 import did:
the request's side. The zip is checked from its directory and stored here; a worker imports it
(projects.importer, through projects.tasks.import_zip) and writes its progress to the row."""

import uuid
from pathlib import PurePosixPath

from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction

from projects.images import dataset_get_or_create
from projects.models import Project, Split, ZipImport, project_files_prefix
from projects.tasks import import_zip
from projects.zipcheck import zip_open, zip_plan


def zip_import_start(*, project: Project, file, split: str = Split.TRAIN, user=None, name: str = "") -> ZipImport:
    """Queue the import of the zip `file` (a seekable binary file) into the `split` dataset.

    Refused at once, with nothing stored, when the file is not a zip or breaks the limits of
    projects.zipcheck (read from its directory; nothing is decompressed here). Otherwise the zip
    is kept in default_storage under the project's folder and a worker imports it after commit;
    the returned row reports its progress, the images added and each entry refused, by name.
    """
    dataset_get_or_create(project=project, split=split)  # an unknown split is refused here, in words
    with zip_open(file) as archive:
        total = len(zip_plan(archive).images)
    file.seek(0)
    stored = default_storage.save(
        f"{project_files_prefix(project.pk)}imports/{uuid.uuid4().hex}.zip",
        file if isinstance(file, File) else File(file),
    )
    try:
        with transaction.atomic():
            zip_import = ZipImport.objects.create(
                project=project,
                split=split,
                file=stored,
                original_name=PurePosixPath((name or getattr(file, "name", "") or "").replace("\\", "/")).name[:255],
                total=total,
                created_by=user if getattr(user, "is_authenticated", False) else None,
                status_message="Waiting for a worker.",
            )
            transaction.on_commit(lambda: import_zip.delay(zip_import.pk))
    except BaseException:
        default_storage.delete(stored)
        raise
    return zip_import
