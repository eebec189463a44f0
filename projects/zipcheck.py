"""Reading an uploaded zip: the limits it must meet before anything in it is decompressed, and
which of its entries are images (labelled by their folders), masks, or refused by name.

A zip's central directory says, for every entry, where its data starts, how many bytes it
takes compressed and how many it unpacks to; Python's zipfile never produces more than the
declared size. So the work an import will do is known from the directory alone, and a zip
bomb is refused in milliseconds: too many entries, too many bytes once unpacked, an entry
compressed far more than photos ever are, or entries whose data overlap (a 59 KB zip whose 200
entries all point at one deflated 49 MB run of zeros unpacks to 9.8 GB).
"""

import zipfile
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from django.conf import settings

from core.errors import Invalid, TooLarge
from projects.models import Label

ZIP_MAX_ENTRIES = 10_000
# Photos barely compress (JPEG, PNG, WebP are compressed already); an uncompressed BMP or TIFF
# of a plain background may shrink tens of times. Far beyond that is not a photo.
ZIP_MAX_RATIO = 200
_LOCAL_HEADER = 30  # bytes of a local file header before its name and extra field


def _gb(n: int) -> str:
    return f"{n / 1024**3:.1f} GB"


def zip_check_limits(archive: zipfile.ZipFile) -> None:
    """Raise TooLarge or Invalid when unpacking `archive` would cost more than an import may."""
    entries = archive.infolist()
    if len(entries) > ZIP_MAX_ENTRIES:
        raise TooLarge(f"The zip holds {len(entries):,} entries; import at most {ZIP_MAX_ENTRIES:,} at a time.")
    total = sum(entry.file_size for entry in entries)
    limit = settings.KENPIN_MAX_ZIP_UNPACKED_BYTES
    if total > limit:
        raise TooLarge(
            f"The zip would unpack to {_gb(total)}; import at most {_gb(limit)} at a time (split it into several zips)."
        )
    for entry in entries:
        if entry.file_size > 1024 * 1024 and entry.file_size > ZIP_MAX_RATIO * max(1, entry.compress_size):
            raise Invalid(
                f"“{entry.filename}” in the zip is compressed {entry.file_size // max(1, entry.compress_size):,} "
                "times, far more than photos ever are; the zip was not imported.",
                code="zip_bomb",
            )
    spans = sorted(
        ((e.header_offset, e.header_offset + _LOCAL_HEADER + _name_length(e) + e.compress_size, e) for e in entries),
        key=lambda span: span[:2],
    )
    for (_, end, entry), (start, _, following) in zip(spans, spans[1:]):
        if start < end:
            raise Invalid(
                f"Entries “{entry.filename}” and “{following.filename}” of the zip share their data, which no "
                "zip tool makes; the zip was not imported.",
                code="zip_bomb",
            )


def _name_length(entry: zipfile.ZipInfo) -> int:
    """Bytes of the entry's name as stored: UTF-8 when flagged so, else code page 437."""
    return len(entry.orig_filename.encode("utf-8" if entry.flag_bits & 0x800 else "cp437", errors="replace"))


def zip_open(file) -> zipfile.ZipFile:
    """`file` (seekable, binary) as a zip that meets the limits; Invalid or TooLarge otherwise.

    Only the zip's directory is read: nothing is decompressed.
    """
    size = getattr(file, "size", None)
    if size is not None and size > settings.KENPIN_MAX_ZIP_BYTES:
        raise TooLarge(
            f"The zip is {_gb(size)}; import at most {_gb(settings.KENPIN_MAX_ZIP_BYTES)} at a time "
            "(split it into several zips)."
        )
    try:
        archive = zipfile.ZipFile(file)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        raise Invalid("This file is not a zip archive Kenpin can read.", code="not_a_zip") from None
    try:
        zip_check_limits(archive)
    except BaseException:
        archive.close()
        raise
    return archive


ZIP_LABEL_FOLDERS = {"normal": Label.NORMAL, "good": Label.NORMAL, "anomaly": Label.ANOMALY, "anomalous": Label.ANOMALY}


@dataclass
class ZipPlan:
    """What importing a zip will do, decided from its directory alone."""

    images: list[tuple[zipfile.ZipInfo, str]] = field(default_factory=list)  # (entry, label)
    masks: dict[str, zipfile.ZipInfo] = field(default_factory=dict)  # image name without extension -> mask entry
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (name in the zip, why it is not imported)


def zip_plan(archive: zipfile.ZipFile) -> ZipPlan:
    """Sort a zip's entries as Lookout for Vision's S3 import did: an image inside a folder
    `normal/` (or `good/`) is normal, inside `anomaly/` an anomaly, elsewhere unlabeled;
    `mask/NAME.png` is the defect mask of image NAME.*. Names inside the zip only choose labels;
    nothing is ever written to a path taken from them. Hidden and macOS files are skipped."""
    plan = ZipPlan()
    for entry in archive.infolist():
        parts = PurePosixPath(entry.filename.replace("\\", "/")).parts
        if entry.is_dir() or any(part.startswith((".", "__MACOSX")) for part in parts if part != ".."):
            continue
        if ".." in parts or entry.filename.startswith(("/", "\\")):
            plan.rejected.append(
                (entry.filename, "Its name points outside the zip (“..” or a leading “/”); it was not imported.")
            )
            continue
        folders = [p.lower() for p in parts[:-1]]
        if folders and folders[-1] in ("mask", "masks"):
            plan.masks[PurePosixPath(parts[-1]).stem] = entry
        else:
            label = next((ZIP_LABEL_FOLDERS[f] for f in reversed(folders) if f in ZIP_LABEL_FOLDERS), Label.UNLABELED)
            plan.images.append((entry, label))
    return plan
