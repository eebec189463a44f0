"""The console's Lookout for Vision page of a project: import a dataset from a Ground Truth
manifest, export the datasets in that format, package model versions and download them."""

import tempfile
import zipfile

from django.contrib import messages
from django.core.files import File
from django.http import FileResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from core.errors import KenpinError
from core.files import storage_file_response
from core.http import form_error
from core.uploads import upload_read
from lookout import selectors, services
from lookout.errors import LookoutError
from lookout.export import project_export_zip
from lookout.forms import ImportForm, PackageForm
from projects.selectors import project_get_for_user
from training.selectors import model_version_get, model_version_list_usable


def _zip_of(files):
    """The files of a folder chosen in the browser, as one zip for the import job (None if none).

    Browsers send each file's path inside the folder, which Django reduces to its name: the
    importer then matches manifest lines to files by name.
    """
    if not files:
        return None
    out = tempfile.TemporaryFile()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        for upload in files:
            archive.writestr(upload.name, upload_read(file=upload))
    out.seek(0)
    return File(out, name="folder.zip")


def _context(project, **extra):
    return {
        "project": project,
        "jobs": selectors.dataset_job_list(project=project)[:10],
        "packages": selectors.packaging_job_list(project=project)[:20],
        "versions": model_version_list_usable(project=project),
        **extra,
    }


@require_http_methods(["GET", "POST"])
def page(request, name):
    project = project_get_for_user(user=request.user, name=name)
    form = ImportForm()
    if request.method == "POST":
        project = project_get_for_user(user=request.user, name=name, write=True)
        form = ImportForm(request.POST, request.FILES)
        if form.is_valid():
            manifest = form.cleaned_data["manifest"]
            try:
                job = services.dataset_import(
                    project=project,
                    split=form.cleaned_data["split"],
                    user=request.user,
                    manifest=upload_read(file=manifest) if manifest else None,
                    manifest_s3_uri=form.cleaned_data["s3_uri"].strip(),
                    images_zip=form.cleaned_data["images"] or _zip_of(form.cleaned_data["folder"]),
                )
            except (KenpinError, LookoutError) as exc:
                messages.error(request, exc.message)
            else:
                return redirect("lookout:job", name=project.name, job_id=job.pk)
        else:
            messages.error(request, form_error(form))
    versions = model_version_list_usable(project=project)
    return render(
        request, "lookout/page.html", _context(project, form=form, package_form=PackageForm(versions=versions))
    )


@require_GET
def job(request, name, job_id):
    project = project_get_for_user(user=request.user, name=name)
    job = selectors.dataset_job_get(project=project, job_id=job_id)
    template = "lookout/_job.html" if request.htmx else "lookout/job.html"
    return render(request, template, {"project": project, "job": job})


@require_GET
def export(request, name):
    project = project_get_for_user(user=request.user, name=name)
    return FileResponse(
        project_export_zip(project=project),
        as_attachment=True,
        filename=f"{project.name}-lookout-for-vision.zip",
        content_type="application/zip",
    )


@require_POST
def package(request, name):
    project = project_get_for_user(user=request.user, name=name, write=True)
    form = PackageForm(request.POST, versions=model_version_list_usable(project=project))
    if not form.is_valid():
        messages.error(request, form_error(form))
        return redirect("lookout:page", name=project.name)
    mv = model_version_get(project=project, version=form.cleaned_data["version"])
    try:
        job = services.packaging_job_start(project=project, model_version=mv, user=request.user, configuration={})
    except LookoutError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Packaging version {mv.version} as {job.name}; it is ready in a few seconds.")
    return redirect("lookout:page", name=project.name)


@require_GET
def package_download(request, name, job_name):
    project = project_get_for_user(user=request.user, name=name)
    job = selectors.packaging_job_get(project=project, name=job_name)
    return storage_file_response(job.package, download_name=f"{job.name}.zip")
