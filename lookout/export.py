"""Export of a project's datasets in Lookout for Vision's format: a zip with `train.manifest`
(and `test.manifest`), the images and their colour masks, which lookout's importer and Lookout
for Vision's own format read back."""

from __future__ import annotations

import re
import tempfile
import zipfile
from pathlib import PurePosixPath

from lookout.manifests import AnomalyClass, entry_line
from projects.masks import MaskClass, color_png, read_stored
from projects.models import (
    IMPLICIT_CLASS_COLOR,
    IMPLICIT_CLASS_INDEX,
    IMPLICIT_CLASS_NAME,
    Image,
    Label,
    MaskKind,
    Project,
    Split,
)
from projects.models import (
    AnomalyClass as ProjectClass,
)

EXPORT_BUCKET = "kenpin-export"  # source-refs name s3://kenpin-export/PROJECT/...: replace with your bucket


def _classes(project: Project) -> list[MaskClass]:
    rows = ProjectClass.objects.filter(project=project).order_by("index")
    classes = [MaskClass(index=c.index, name=c.name, color=c.color) for c in rows]
    return classes or [MaskClass(index=IMPLICIT_CLASS_INDEX, name=IMPLICIT_CLASS_NAME, color=IMPLICIT_CLASS_COLOR)]


def _file_name(image: Image) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]", "_", PurePosixPath(image.original_name or "").name) or "image"
    return f"{image.pk}-{name}"


def project_export_zip(*, project: Project):
    """A temporary file (open, at its start) holding the project's datasets as a zip."""
    classes = _classes(project)
    line_classes = [AnomalyClass(name=c.name, color=c.color.lower()) for c in classes]
    out = tempfile.TemporaryFile()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        for split in Split.values:
            images = Image.objects.filter(project=project, dataset__split=split).order_by("id")
            if not images.exists():
                continue
            lines = []
            for image in images.iterator():
                name = _file_name(image)
                prefix = f"{project.name}/{split}"
                with image.file.open("rb") as f:
                    archive.writestr(f"{prefix}/images/{name}", f.read())
                mask_ref = None
                if image.mask:
                    with image.mask.open("rb") as f:
                        indices = read_stored(
                            f.read(),
                            binary=image.mask_kind == MaskKind.BINARY,
                            width=image.width,
                            height=image.height,
                            implicit_index=IMPLICIT_CLASS_INDEX,
                        )
                    mask_name = f"{PurePosixPath(name).stem}.png"
                    archive.writestr(f"{prefix}/masks/{mask_name}", color_png(indices, classes))
                    mask_ref = f"s3://{EXPORT_BUCKET}/{prefix}/masks/{mask_name}"
                lines.append(
                    entry_line(
                        source_ref=f"s3://{EXPORT_BUCKET}/{prefix}/images/{name}",
                        label=None if image.label == Label.UNLABELED else image.label,
                        mask_ref=mask_ref,
                        classes=line_classes,
                        created_at=image.uploaded_at,
                    )
                )
            archive.writestr(f"{split}.manifest", "\n".join(lines) + "\n")
        archive.writestr(
            "README.txt",
            f"Kenpin project {project.name} in Amazon Lookout for Vision's format.\n\n"
            "train.manifest and test.manifest are SageMaker Ground Truth manifests (one JSON line an image).\n"
            f"Their source-refs name s3://{EXPORT_BUCKET}/{project.name}/...: import this zip into Kenpin as it is\n"
            "(Import a Lookout for Vision dataset), or copy the folders to your own bucket and replace\n"
            f"s3://{EXPORT_BUCKET}/ in the manifests with your location.\n",
        )
    out.seek(0)
    return out
