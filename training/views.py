from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from core.errors import KenpinError
from core.files import storage_file_response
from core.http import form_error
from projects.models import Label
from projects.selectors import project_get_for_user, training_readiness
from training import services
from training.forms import CompareForm, ThresholdForm, TrainForm
from training.models import Evaluation
from training.selectors import (
    SMALL_EVALUATION_PHOTOS,
    model_version_class_results,
    model_version_compare,
    model_version_get,
    model_version_list,
    model_version_list_with_performance,
    model_version_result_get,
    model_version_results_at_threshold,
    model_versions_class_rows,
)


def _list_page(request, project, form, *, status=200):
    return render(
        request,
        "training/list.html",
        {
            "project": project,
            "model_versions": model_version_list_with_performance(project=project),
            "readiness": training_readiness(project=project),
            "form": form,
        },
        status=status,
    )


@require_GET
def model_list(request, name):
    project = project_get_for_user(user=request.user, name=name)
    return _list_page(request, project, TrainForm())


@require_POST
def model_start(request, name):
    """Start a training; on a refusal the form comes back as it was filled, with the reason."""
    project = project_get_for_user(user=request.user, name=name, write=True)
    form = TrainForm(request.POST)
    try:
        if not form.is_valid():
            raise KenpinError(form_error(form))
        mv = services.model_version_start_training(project=project, user=request.user, **form.cleaned_data)
    except KenpinError as exc:
        messages.error(request, exc.message)
        return _list_page(request, project, form, status=exc.status)
    return redirect("training:detail", name=name, version=mv.version)


def _result_data(rows) -> list[dict]:
    """Each evaluated image for the version page's script: what it needs to redraw the results."""
    return [{"id": row.pk, "score": row.score, "anomaly": row.label == Label.ANOMALY} for row in rows]


@require_GET
def model_detail(request, name, version):
    project = project_get_for_user(user=request.user, name=name)
    mv = model_version_get(project=project, version=version)
    context = {"project": project, "mv": mv}
    if mv.is_usable:
        performance = model_version_results_at_threshold(model_version=mv)
        metrics = mv.metrics or {}
        context.update(
            {
                "performance": performance,
                "chart_data": {
                    "threshold": mv.threshold,
                    "trainedThreshold": mv.trained_threshold,
                    "results": _result_data(performance.rows),
                    "roc": metrics.get("roc_curve"),
                    "pr": metrics.get("pr_curve"),
                    "intervals": performance.intervals,
                },
                "small_evaluation_photos": SMALL_EVALUATION_PHOTOS,
                "threshold_form": ThresholdForm(initial={"threshold": mv.threshold}),
                "class_results": model_version_class_results(model_version=mv),
                "cross_validation": mv.evaluation == Evaluation.CROSS_VALIDATION,
            }
        )
    return render(request, "training/detail.html", context)


@require_GET
def model_status(request, name, version):
    """The live status fragment that htmx polls until the training is over."""
    project = project_get_for_user(user=request.user, name=name)
    mv = model_version_get(project=project, version=version)
    template = "training/_status_cell.html" if request.GET.get("compact") else "training/_status.html"
    response = render(request, template, {"project": project, "mv": mv})
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
    else:
        messages.success(request, f"The training of version {mv.version} was cancelled.")
    return redirect("training:detail", name=name, version=version)


@require_POST
def model_threshold(request, name, version):
    project = project_get_for_user(user=request.user, name=name, write=True)
    mv = model_version_get(project=project, version=version)
    form = ThresholdForm(request.POST)
    try:
        if not form.is_valid():
            raise KenpinError(form_error(form))
        services.model_version_set_threshold(
            model_version=mv, threshold=form.cleaned_data["threshold"], user=request.user
        )
    except KenpinError as exc:
        messages.error(request, f"The threshold was not changed: {exc.message}")
    else:
        messages.success(
            request, f"Version {mv.version} now flags images scoring {mv.threshold:.3f} or more as anomalous."
        )
    return redirect("training:detail", name=name, version=version)


@require_POST
def model_delete(request, name, version):
    project = project_get_for_user(user=request.user, name=name, write=True)
    mv = model_version_get(project=project, version=version)
    try:
        services.model_version_delete(model_version=mv, user=request.user)
    except KenpinError as exc:
        messages.error(request, exc.message)
        return redirect("training:detail", name=name, version=version)
    messages.success(request, f"Version {version} was deleted.")
    return redirect("training:list", name=name)


@require_GET
def model_compare(request, name):
    project = project_get_for_user(user=request.user, name=name)
    all_versions = list(model_version_list(project=project))
    form = CompareForm(request.GET or None, versions=[mv.version for mv in all_versions])
    comparison = model_version_compare(project=project, versions=form.cleaned_data["v"]) if form.is_valid() else None
    return render(
        request,
        "training/compare.html",
        {
            "project": project,
            "all_versions": all_versions,
            "form": form,
            "chosen": form.cleaned_data["v"] if comparison else [],
            "error": form_error(form) if form.is_bound and not form.is_valid() else "",
            "comparison": comparison,
            "class_rows": model_versions_class_rows(model_versions=[c.model_version for c in comparison.columns])
            if comparison
            else [],
        },
        status=400 if form.is_bound and not form.is_valid() else 200,
    )


@require_GET
def result_predicted_mask(request, name, version, row_id):
    """A segmentation version's predicted classes on one evaluated image (colours on transparent)."""
    project = project_get_for_user(user=request.user, name=name)
    mv = model_version_get(project=project, version=version)
    return storage_file_response(model_version_result_get(model_version=mv, row_id=row_id).predicted_mask)


@require_GET
def result_heatmap(request, name, version, row_id):
    """A version's anomaly heatmap of one evaluated image (an RGBA PNG to lay over the photo)."""
    project = project_get_for_user(user=request.user, name=name)
    mv = model_version_get(project=project, version=version)
    return storage_file_response(model_version_result_get(model_version=mv, row_id=row_id).heatmap)
