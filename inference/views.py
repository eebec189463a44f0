from django.shortcuts import render
from django.views.decorators.http import require_GET

from inference.selectors import trial_get, trial_list
from projects.selectors import project_get_for_user


@require_GET
def trial_index(request, name):
    project = project_get_for_user(user=request.user, name=name)
    return render(request, "inference/list.html", {"project": project, "trials": trial_list(project=project)})


@require_GET
def trial_detail(request, name, trial_id):
    project = project_get_for_user(user=request.user, name=name)
    trial = trial_get(project=project, trial_id=trial_id)
    return render(request, "inference/detail.html", {"project": project, "trial": trial, "images": trial.images.all()})
