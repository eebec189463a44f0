from django.conf import settings
from django.contrib import messages
from django.http import JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from core.errors import Invalid, KenpinError
from core.files import storage_file_response
from core.http import form_error, json_error
from core.uploads import upload_read
from inference import hosting, trials
from inference.forms import AddToDatasetForm, TrialForm, VerdictForm
from inference.selectors import (
    OPERATION_PERIODS,
    TRIAL_FILTERS,
    detection_csv_rows,
    detection_record_get,
    model_version_operations,
    trial_get,
    trial_image_file,
    trial_image_get,
    trial_images,
    trial_is_segmentation,
    trial_list,
    trial_mask_classes,
    trial_summary,
)
from projects.activity import csv_lines
from projects.forms import MaskForm
from projects.models import Label
from projects.selectors import image_list, project_get_for_user
from training.selectors import model_version_get, model_version_list_usable

# Unlabeled images offered for a trial; more are better tried by uploading them anew.
MAX_OFFERED_IMAGES = 200


def _index_page(request, project, form, *, status=200):
    versions = list(model_version_list_usable(project=project))
    return render(
        request,
        "inference/list.html",
        {
            "project": project,
            "trials": trial_list(project=project),
            "versions": versions,
            "form": form,
            "unlabeled": image_list(project=project, label=Label.UNLABELED)[:MAX_OFFERED_IMAGES],
            "chosen_ids": set(form["image_ids"].value() or []) if form.is_bound else set(),
        },
        status=status,
    )


@require_http_methods(["GET", "POST"])
def trial_index(request, name):
    """The project's trial detections, and the form that starts a new one (POST, editors)."""
    project = project_get_for_user(user=request.user, name=name, write=request.method == "POST")
    versions = list(model_version_list_usable(project=project))
    if request.method == "GET":
        form = TrialForm(versions=versions, initial={"model_version": request.GET.get("version")})
        return _index_page(request, project, form)
    form = TrialForm(request.POST, versions=versions)
    if not form.is_valid():
        messages.error(request, form_error(form))
        return _index_page(request, project, form, status=400)
    rejected = []
    uploads = []
    for file in request.FILES.getlist("files"):
        try:
            uploads.append(trials.trial_upload_read(file=file))
        except KenpinError as exc:
            rejected.append((file.name, exc.message))
    try:
        if not uploads and not form.cleaned_data["image_ids"]:
            raise Invalid(
                "Add photos to try the model on, or tick some of the project's unlabeled images."
                + "".join(f" {name}: {reason}" for name, reason in rejected)
            )
        created = trials.trial_create(
            project=project,
            model_version=model_version_get(project=project, version=form.cleaned_data["model_version"]),
            user=request.user,
            name=form.cleaned_data["name"],
            uploads=uploads,
            image_ids=form.cleaned_data["image_ids"],
        )
    except KenpinError as exc:
        messages.error(request, exc.message)
        return _index_page(request, project, form, status=exc.status)
    for file_name, reason in rejected + created.rejected:
        messages.warning(request, f"{file_name} was left out: {reason}")
    return redirect("inference:detail", name=project.name, trial_id=created.trial.pk)


def _detail_context(project, trial) -> dict:
    return {
        "project": project,
        "trial": trial,
        "segmentation": trial_is_segmentation(trial=trial),
        "painter_classes": trial_mask_classes(trial=trial),
        "summary": trial_summary(trial=trial),
        "add_form": AddToDatasetForm(),
    }


@require_GET
def trial_detail(request, name, trial_id):
    project = project_get_for_user(user=request.user, name=name)
    trial = trial_get(project=project, trial_id=trial_id)
    show = request.GET.get("show", "")
    return render(
        request,
        "inference/detail.html",
        {
            **_detail_context(project, trial),
            "images": trial_images(trial=trial, show=show),
            "show": show if show in TRIAL_FILTERS else "",
        },
    )


@require_GET
def trial_status(request, name, trial_id):
    """The progress fragment htmx polls while the trial runs: the trial page's card, or with
    ?row=1 the trial's row in the past-trials table."""
    project = project_get_for_user(user=request.user, name=name)
    if request.GET.get("row"):
        trial = get_object_or_404(trial_list(project=project), pk=trial_id)
        return render(request, "inference/_trial_row.html", {"project": project, "trial": trial})
    trial = trial_get(project=project, trial_id=trial_id)
    response = render(request, "inference/_status.html", {"project": project, "trial": trial})
    if trial.is_final and request.htmx:
        response["HX-Refresh"] = "true"  # the full page shows the predictions
    return response


@require_POST
def trial_image_verdict(request, name, trial_id, trial_image_id):
    """Mark one prediction correct or incorrect; htmx swaps in the card and the add-to-dataset panel."""
    project = project_get_for_user(user=request.user, name=name, write=True)
    trial = trial_get(project=project, trial_id=trial_id)
    row = trial_image_get(trial=trial, trial_image_id=trial_image_id)
    form = VerdictForm(request.POST)
    error = ""
    try:
        if not form.is_valid():
            raise Invalid(form_error(form))
        row = trials.trial_image_set_verdict(trial_image=row, verdict=form.cleaned_data["verdict"], user=request.user)
    except KenpinError as exc:
        error = exc.message
    if not request.htmx:
        if error:
            messages.error(request, error)
        return redirect("inference:detail", name=project.name, trial_id=trial.pk)
    return render(
        request,
        "inference/_verdict_response.html",
        {
            **_detail_context(project, trial),
            "ti": row,
            "error": error,
        },
    )


@require_POST
def trial_add_to_dataset(request, name, trial_id):
    project = project_get_for_user(user=request.user, name=name, write=True)
    trial = trial_get(project=project, trial_id=trial_id)
    form = AddToDatasetForm(request.POST)
    if not form.is_valid():
        messages.error(request, form_error(form))
        return redirect("inference:detail", name=project.name, trial_id=trial.pk)
    report = trials.trial_add_verified_to_dataset(trial=trial, user=request.user, split=form.cleaned_data["split"])
    if report.added or report.relabeled:
        parts = []
        if report.added:
            parts.append(f"{report.added} new image{'s' if report.added != 1 else ''} added to the dataset")
        if report.relabeled:
            parts.append(
                f"{report.relabeled} image{'s' if report.relabeled != 1 else ''} already in the project relabeled"
            )
        messages.success(
            request, " and ".join(parts) + " with the labels you verified. Train a new version to use them."
        )
    elif not report.skipped:
        messages.info(request, "No verified image is waiting: mark predictions correct or incorrect first.")
    for file_name, reason in report.skipped:
        messages.warning(request, f"{file_name} was not added: {reason}")
    return redirect("inference:detail", name=project.name, trial_id=trial.pk)


@require_POST
def trial_delete(request, name, trial_id):
    project = project_get_for_user(user=request.user, name=name, write=True)
    trial = trial_get(project=project, trial_id=trial_id)
    trials.trial_delete(trial=trial, user=request.user)
    messages.success(
        request, f"Trial detection “{trial.name}” deleted. Images already added to the dataset stay there."
    )
    return redirect("inference:list", name=project.name)


@require_POST
def trial_image_mask(request, name, trial_id, trial_image_id):
    """The painter's correction of a trial image's mask (JSON for its script)."""
    project = project_get_for_user(user=request.user, name=name, write=True)
    trial = trial_get(project=project, trial_id=trial_id)
    row = trial_image_get(trial=trial, trial_image_id=trial_image_id)
    form = MaskForm(request.POST, request.FILES)
    try:
        if not form.is_valid():
            raise Invalid(form_error(form))
        trials.trial_image_set_mask(trial_image=row, mask=upload_read(file=form.cleaned_data["mask"]))
    except KenpinError as exc:
        return json_error(exc)
    return JsonResponse({"message": "Mask saved: it goes with the image when you add it to the dataset.", "id": row.pk})


@require_GET
def trial_image_file_view(request, name, trial_id, trial_image_id, kind):
    project = project_get_for_user(user=request.user, name=name)
    trial = trial_get(project=project, trial_id=trial_id)
    row = trial_image_get(trial=trial, trial_image_id=trial_image_id)
    return storage_file_response(trial_image_file(trial_image=row, kind=kind))


# --- Hosting ------------------------------------------------------------------------------------

HOSTING_ACTIONS = {"start": "model_version_start_hosting", "stop": "model_version_stop_hosting"}


@require_http_methods(["GET", "POST"])
def model_hosting(request, name, version):
    """The hosting card: GET is the fragment htmx polls while hosting starts or stops; POST
    with action=start|stop asks for the change (editors and owners)."""
    project = project_get_for_user(user=request.user, name=name, write=request.method == "POST")
    mv = model_version_get(project=project, version=version)
    if request.method == "POST":
        action = HOSTING_ACTIONS.get(request.POST.get("action", ""))
        try:
            if action is None:
                raise KenpinError("Choose to start or to stop hosting.")
            getattr(hosting, action)(model_version=mv, user=request.user)
        except KenpinError as exc:
            messages.error(request, exc.message)
        if not request.htmx:
            return redirect("training:detail", name=name, version=version)
    response = render(request, "inference/_hosting.html", {"project": project, "mv": mv})
    if request.method == "GET" and request.htmx and not mv.is_changing_hosting:
        # Hosting settled while polling: refresh the whole page (status badge, actions).
        response["HX-Refresh"] = "true"
    return response


# --- Operations ---------------------------------------------------------------------------------


@require_GET
def model_operations(request, name, version):
    """What the line has sent a model: detect calls over time, the share flagged, latency,
    photos unlike the training photos and the latest anomalous photos (every member)."""
    project = project_get_for_user(user=request.user, name=name)
    mv = model_version_get(project=project, version=version)
    period = request.GET.get("period", "hour")
    if period not in OPERATION_PERIODS:
        period = "hour"
    ops = model_version_operations(model_version=mv, period=period)
    chart = {
        "period": period,
        "labels": [b.start.isoformat() for b in ops.buckets],
        "calls": [b.calls for b in ops.buckets],
        "anomalous": [b.anomalous for b in ops.buckets],
        "share": [None if b.anomalous_share is None else round(b.anomalous_share, 4) for b in ops.buckets],
        "latency": [None if b.latency_ms is None else round(b.latency_ms, 1) for b in ops.buckets],
        "unlike": [b.unlike for b in ops.buckets],
    }
    return render(
        request,
        "inference/operations.html",
        {"project": project, "mv": mv, "ops": ops, "chart": chart, "days_kept": settings.KENPIN_DETECTION_DAYS},
    )


@require_GET
def model_operations_csv(request, name, version):
    project = project_get_for_user(user=request.user, name=name)
    mv = model_version_get(project=project, version=version)
    response = StreamingHttpResponse(
        csv_lines(detection_csv_rows(model_version=mv)), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{project.name}-v{mv.version}-detections.csv"'
    return response


@require_GET
def detection_file(request, name, version, record_id, kind):
    project = project_get_for_user(user=request.user, name=name)
    mv = model_version_get(project=project, version=version)
    record = detection_record_get(model_version=mv, record_id=record_id)
    return storage_file_response(record.photo if kind == "photo" else record.mask)
