"""Kenpin's API v1 (bearer tokens, /api/v1/projects/...) for what the Lookout for Vision page of
the console offers beyond Lookout for Vision's own operations: downloading a model package and
exporting the datasets in Lookout for Vision's format."""

from django.http import FileResponse, Http404
from ninja import Router

from core.files import storage_file_response
from lookout import selectors
from lookout.errors import ResourceNotFoundException
from lookout.export import project_export_zip
from projects.selectors import project_get_for_user

router = Router(tags=["Lookout for Vision"])

ZIP = {"responses": {200: {"description": "A zip file.", "content": {"application/zip": {}}}}}


@router.get("/{name}/lookout/packages/{job_name}", summary="Download a model package", openapi_extra=ZIP)
def download_package(request, name: str, job_name: str):
    """The zip of a SUCCEEDED model packaging job (StartModelPackagingJob, or the console's
    Package button): the model, its backbone graph and a runner that needs no Kenpin server."""
    project = project_get_for_user(user=request.auth, name=name)
    try:
        job = selectors.packaging_job_get(project=project, name=job_name)
    except ResourceNotFoundException:
        raise Http404 from None
    return storage_file_response(job.package, download_name=f"{job.name}.zip")


@router.get("/{name}/lookout/export", summary="Export the datasets in Lookout for Vision's format", openapi_extra=ZIP)
def export_datasets(request, name: str):
    """A zip with train.manifest (and test.manifest), the images and their colour masks."""
    project = project_get_for_user(user=request.auth, name=name)
    return FileResponse(
        project_export_zip(project=project),
        as_attachment=True,
        filename=f"{project.name}-lookout-for-vision.zip",
        content_type="application/zip",
    )
