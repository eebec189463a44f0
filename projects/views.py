from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from console.errors import KenpinError
from console.files import storage_file_response
from projects import services
from projects.forms import ProjectForm
from projects.selectors import dataset_counts, image_get, project_get_for_user, project_has_test_dataset
from training.selectors import model_version_list, training_readiness


@require_http_methods(["GET", "POST"])
def project_create(request):
    form = ProjectForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            project = services.project_create(user=request.user, **form.cleaned_data)
        except KenpinError as exc:
            form.add_error("name", exc.message)
        else:
            messages.success(request, f"Project “{project.name}” created. Add images to its training dataset next.")
            return redirect("projects:detail", name=project.name)
    return render(request, "projects/create.html", {"form": form}, status=400 if form.errors else 200)


@require_GET
def project_detail(request, name):
    project = project_get_for_user(user=request.user, name=name)
    return render(request, "projects/detail.html", {
        "project": project,
        "counts": dataset_counts(project=project),
        "has_test": project_has_test_dataset(project=project),
        "readiness": training_readiness(project=project),
        "model_versions": model_version_list(project=project)[:5],
    })


@require_GET
def image_file(request, name, image_id, kind):
    """The image itself, its thumbnail or its mask, for members of its project only."""
    project = project_get_for_user(user=request.user, name=name)
    image = image_get(project=project, image_id=image_id)
    field = {"file": image.file, "thumbnail": image.thumbnail, "mask": image.mask}[kind]
    return storage_file_response(field)
