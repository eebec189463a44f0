"""Django's admin: an operator's read-only window on every Kenpin table."""

import pytest
from django.contrib import admin
from django.urls import reverse

from projects.models import ImportStatus, Split, ZipImport
from tests import factories

pytestmark = pytest.mark.django_db


def test_every_table_kenpin_registers_lists_and_opens_its_rows_for_an_operator(client, project):
    operator = factories.UserFactory(is_staff=True, is_superuser=True)
    client.force_login(operator)
    factories.add_image(project)
    factories.make_version(project)
    ZipImport.objects.create(project=project, split=Split.TRAIN, status=ImportStatus.COMPLETE, original_name="a.zip")
    for model in admin.site._registry:
        meta = model._meta
        if meta.app_label in ("auth", "sites", "contenttypes", "sessions"):
            continue
        listing = client.get(reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist"))
        assert listing.status_code == 200, meta.label
        row = model.objects.first()
        if row is not None:
            page = client.get(reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[row.pk]))
            assert page.status_code == 200, meta.label


def test_a_zip_import_is_a_report_an_operator_can_read_but_not_edit(client, project):
    operator = factories.UserFactory(is_staff=True, is_superuser=True)
    client.force_login(operator)
    job = ZipImport.objects.create(
        project=project, split=Split.TRAIN, status=ImportStatus.COMPLETE, original_name="lot-7.zip"
    )
    assert b"lot-7.zip" in client.get(reverse("admin:projects_zipimport_changelist")).content
    assert client.get(reverse("admin:projects_zipimport_add")).status_code == 403
    client.post(reverse("admin:projects_zipimport_change", args=[job.pk]), {"original_name": "renamed.zip"})
    job.refresh_from_db()
    assert job.original_name == "lot-7.zip"
