import io
import zipfile

import pytest

from core.errors import Invalid
from projects.imports import dataset_import_zip
from tests.factories import image_bytes, make_project

pytestmark = pytest.mark.django_db


def _zip(entries: dict[str, bytes]) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    buffer.seek(0)
    return buffer


def test_a_zip_import_labels_by_folder_and_reports_bad_files(user):
    project = make_project(owner=user)
    archive = _zip(
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
    report = dataset_import_zip(project=project, file=archive, user=user)
    labels = sorted((i.original_name, i.label, bool(i.mask)) for i in report.added)
    assert labels == [
        ("a.png", "normal", False),
        ("b.png", "normal", False),
        ("c.png", "anomaly", True),
        ("loose.png", "unlabeled", False),
    ]
    assert [name for name, _ in report.rejected] == ["cookies/anomaly/readme.txt"]


def test_a_zip_import_refuses_a_file_that_is_not_a_zip(user):
    with pytest.raises(Invalid):
        dataset_import_zip(project=make_project(owner=user), file=io.BytesIO(b"nope"))
