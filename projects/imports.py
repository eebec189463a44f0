"""Importing a zip of images whose folders name their labels, as Lookout for Vision's S3 import did."""

import zipfile
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from django.conf import settings

from core.errors import Conflict, Invalid, TooLarge
from core.uploads import check_upload_length
from projects.images import dataset_add_image, dataset_get_or_create
from projects.models import Image, Label, Project, Split
from projects.zipcheck import zip_check_limits


@dataclass
class ImportReport:
    added: list[Image] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (file name in the zip, reason)


ZIP_LABEL_FOLDERS = {"normal": Label.NORMAL, "good": Label.NORMAL, "anomaly": Label.ANOMALY, "anomalous": Label.ANOMALY}


def dataset_import_zip(*, project: Project, file, split: str = Split.TRAIN, user=None) -> ImportReport:
    """Import a zip whose folders name the labels, as LFV's S3 import did.

    An image inside a folder `normal/` (or `good/`) becomes normal, one inside `anomaly/` an
    anomaly, any other one unlabeled; `mask/NAME.png` is the defect mask of image NAME.*.
    Names inside the zip only choose labels; nothing is ever written to a path taken from it.
    Each image is added on its own, so one bad file does not stop the others.
    """
    dataset_get_or_create(project=project, split=split)
    if getattr(file, "size", 0) > settings.KENPIN_MAX_ZIP_BYTES:
        raise TooLarge(
            f"The zip is {file.size / 2**30:.1f} GB; import at most "
            f"{settings.KENPIN_MAX_ZIP_BYTES / 2**30:.0f} GB at a time."
        )
    try:
        archive = zipfile.ZipFile(file)
    except (zipfile.BadZipFile, OSError):
        raise Invalid("This file is not a zip archive Kenpin can read.", code="not_a_zip") from None
    with archive:
        zip_check_limits(archive)  # before a byte is decompressed
        report = ImportReport()
        entries = []
        for entry in archive.infolist():
            parts = PurePosixPath(entry.filename.replace("\\", "/")).parts
            if entry.is_dir():
                continue
            if ".." in parts or entry.filename.startswith(("/", "\\")):
                report.rejected.append(
                    (entry.filename, "Its name points outside the zip (“..” or a leading “/”); it was not imported.")
                )
            elif not any(part.startswith((".", "__MACOSX")) for part in parts):  # hidden and macOS files
                entries.append(entry)
        masks = {}
        images = []
        for entry in entries:
            path = PurePosixPath(entry.filename)
            folders = [p.lower() for p in path.parts[:-1]]
            if folders and folders[-1] in ("mask", "masks"):
                masks[path.stem] = entry
            else:
                label = next(
                    (ZIP_LABEL_FOLDERS[f] for f in reversed(folders) if f in ZIP_LABEL_FOLDERS), Label.UNLABELED
                )
                images.append((entry, label))
        for entry, label in images:
            path = PurePosixPath(entry.filename)
            try:
                check_upload_length(entry.file_size)
                mask_entry = masks.get(path.stem) if label == Label.ANOMALY else None
                report.added.append(
                    dataset_add_image(
                        project=project,
                        data=archive.read(entry),
                        name=path.name,
                        label=label,
                        split=split,
                        user=user,
                        mask=archive.read(mask_entry) if mask_entry else None,
                    )
                )
            except (Invalid, Conflict, TooLarge) as exc:
                report.rejected.append((entry.filename, exc.message))
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                report.rejected.append((entry.filename, f"The file is damaged inside the zip ({exc})."))
    return report
