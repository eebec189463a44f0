from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from console.errors import KenpinError
from projects.selectors import project_get_for_user
from training import services
from training.forms import TrainForm
from training.selectors import model_version_get, model_version_list, training_readiness


@require_GET
def model_list(request, name):
    project = project_get_for_user(user=request.user, name=name)
    return render(request, "training/list.html", {
        "project": project,
        "model_versions": model_version_list(project=project),
        "readiness": training_readiness(project=project),
        "form": TrainForm(),
    })


@require_POST
def model_start(request, name):
    project = project_get_for_user(user=request.user, name=name, write=True)
    form = TrainForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a backbone from the list.")
        return redirect("training:list", name=name)
    try:
        mv = services.model_version_start_training(project=project, user=request.user, **form.cleaned_data)
    except KenpinError as exc:
        messages.error(request, exc.message)
        return redirect("training:list", name=name)
    return redirect("training:detail", name=name, version=mv.version)


@require_GET
def model_detail(request, name, version):
    project = project_get_for_user(user=request.user, name=name)
    mv = model_version_get(project=project, version=version)
    return render(request, "training/detail.html", {"project": project, "mv": mv})


@require_GET
def model_status(request, name, version):
    """The live status fragment that htmx polls until the training is over."""
    project = project_get_for_user(user=request.user, name=name)
    mv = model_version_get(project=project, version=version)
    response = render(request, "training/_status.html", {"project": project, "mv": mv})
    if mv.is_final and request.htmx:
        # The fragment stops polling once final; a full refresh shows the results.
        response["HX-Refresh"] = "true"
    return response


@require_POST
def model_cancel(request, name, version):
    project = project_get_for_user(user=request.user, name=name, write=True)
    mv = model_version_get(project=project, version=version)
    try:
        services.model_version_cancel_training(model_version=mv, user=request.user)
    except KenpinError as exc:
        messages.error(request, exc.message)
    return redirect("training:detail", name=name, version=version)
