from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from core.errors import Invalid, KenpinError
from core.files import storage_file_response
from core.http import form_error, json_error, redirect_back, wants_json
from core.uploads import upload_read
from engine.images import ACCEPTED_FORMATS
from projects import activity, classes, images, imports, projects
from projects.forms import (
    AnomalyClassDeleteForm,
    AnomalyClassForm,
    ImageFilterForm,
    ImagesDeleteForm,
    ImagesLabelForm,
    ImagesMoveForm,
    ImageUploadForm,
    MaskForm,
    MemberForm,
    ProjectDeleteForm,
    ProjectForm,
    ProjectUpdateForm,
    ZipImportForm,
)
from projects.models import Label, Split
from projects.selectors import (
    anomaly_class_free_color,
    anomaly_class_get,
    anomaly_class_list,
    anomaly_class_usage,
    dataset_counts,
    image_get,
    image_list,
    image_mask_classes,
    image_mask_png,
    image_neighbours,
    image_sha256s_present,
    image_states,
    image_unlike_training,
    mask_classes,
    masks_using_class,
    project_get_for_user,
    project_has_test_dataset,
    project_members,
    training_readiness,
    zip_import_get,
    zip_import_list,
)

IMAGES_PER_PAGE = 48  # 6 columns x 8 rows at 1280 px


@require_http_methods(["GET", "POST"])
def project_create(request):
    form = ProjectForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            project = projects.project_create(user=request.user, **form.cleaned_data)
        except KenpinError as exc:
            form.add_error("name", exc.message)
        else:
            messages.success(request, f"Project “{project.name}” created. Add images to its training dataset next.")
            return redirect("project", name=project.name)
    return render(request, "projects/create.html", {"form": form}, status=400 if form.errors else 200)


def dataset_context(project, filters: dict | None = None) -> dict:
    """What the overview, the label grid and its counts bar show about the datasets.

    `chips` are the counts bar's filter links: per label within the chosen dataset, and per
    dataset within the chosen label, so that each number is what clicking it will show.
    """
    counts = dataset_counts(project=project)
    filters = filters or {"label": "", "split": ""}
    splits = [filters["split"]] if filters["split"] else list(Split.values)

    def n(label, split):
        c = counts[split]
        return c.total if not label else getattr(c, label)

    label_chips = [("", "All", sum(n("", s) for s in splits))] + [
        (label, name, sum(n(label, s) for s in splits)) for label, name in Label.choices
    ]
    split_chips = [("", "Both datasets", sum(n(filters["label"], s) for s in Split.values))] + [
        (Split.TRAIN, "Training", n(filters["label"], Split.TRAIN)),
        (Split.TEST, "Test", n(filters["label"], Split.TEST)),
    ]
    return {
        "counts": counts,
        "has_test": project_has_test_dataset(project=project),
        "readiness": training_readiness(project=project),
        "filters": filters,
        "label_chips": label_chips,
        "split_chips": split_chips,
    }


# --- Settings, members, deletion --------------------------------------------------------------


def settings_page(
    request, project, *, update_form=None, member_form=None, delete_form=None, class_form=None, status=200
):
    usage = anomaly_class_usage(project=project)
    return render(
        request,
        "projects/settings.html",
        {
            "project": project,
            "anomaly_classes": [(c, usage.get(c.index, 0)) for c in anomaly_class_list(project=project)],
            "class_form": class_form or AnomalyClassForm(initial={"color": anomaly_class_free_color(project=project)}),
            "members": project_members(project=project),
            "update_form": update_form or ProjectUpdateForm(initial={"description": project.description}),
            "member_form": member_form or MemberForm(),
            "delete_form": delete_form or ProjectDeleteForm(),
        },
        status=status,
    )


@require_http_methods(["GET", "POST"])
def project_settings(request, name):
    """Read by every member; the description is changed by editors and owners (POST)."""
    project = project_get_for_user(user=request.user, name=name, write=request.method == "POST")
    if request.method == "GET":
        return settings_page(request, project)
    form = ProjectUpdateForm(request.POST)
    if not form.is_valid():
        return settings_page(request, project, update_form=form, status=400)
    projects.project_update(project=project, user=request.user, **form.cleaned_data)
    messages.success(request, "Description saved.")
    return redirect("projects:settings", name=project.name)


@require_POST
def member_set(request, name):
    project = project_get_for_user(user=request.user, name=name, owner=True)
    form = MemberForm(request.POST)
    if form.is_valid():
        try:
            membership = projects.member_set(project=project, user=request.user, **form.cleaned_data)
        except KenpinError as exc:
            form.add_error("username", exc.message)
        else:
            messages.success(
                request, f"{membership.user.username} is now {membership.get_role_display().lower()} of this project."
            )
            return redirect("projects:settings", name=project.name)
    return settings_page(request, project, member_form=form, status=400)


@require_POST
def member_remove(request, name, user_id):
    project = project_get_for_user(user=request.user, name=name, owner=True)
    try:
        projects.member_remove(project=project, user_id=user_id, user=request.user)
    except KenpinError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Member removed.")
    return redirect("projects:settings", name=project.name)


# --- Anomaly classes --------------------------------------------------------------------------


@require_POST
def anomaly_class_create(request, name):
    project = project_get_for_user(user=request.user, name=name, write=True)
    form = AnomalyClassForm(request.POST)
    if form.is_valid():
        try:
            created = classes.anomaly_class_create(project=project, **form.cleaned_data)
        except KenpinError as exc:
            form.add_error("name" if "name" in exc.code else "color", exc.message)
        else:
            messages.success(request, f"Anomaly class “{created.name}” added; paint it with key {_key(created)}.")
            return redirect(reverse("projects:settings", kwargs={"name": project.name}) + "#classes")
    return settings_page(request, project, class_form=form, status=400)


def _key(anomaly_class) -> str:
    position = [c.pk for c in anomaly_class_list(project=anomaly_class.project)].index(anomaly_class.pk) + 1
    return str(position) if position <= 9 else "(none: pick it in the palette)"


@require_POST
def anomaly_class_update(request, name, class_id):
    project = project_get_for_user(user=request.user, name=name, write=True)
    anomaly_class = anomaly_class_get(project=project, class_id=class_id)
    form = AnomalyClassForm(request.POST)
    try:
        if not form.is_valid():
            raise Invalid(form_error(form))
        classes.anomaly_class_update(
            anomaly_class=anomaly_class, name=form.cleaned_data["name"], color=form.cleaned_data["color"] or None
        )
    except KenpinError as exc:
        messages.error(request, f"The class was not changed: {exc.message}")
    else:
        messages.success(request, f"Class saved as “{anomaly_class.name}” ({anomaly_class.color}).")
    return redirect(reverse("projects:settings", kwargs={"name": project.name}) + "#classes")


@require_http_methods(["GET", "POST"])
def anomaly_class_delete(request, name, class_id):
    """GET asks (saying how many masks change), POST deletes."""
    project = project_get_for_user(user=request.user, name=name, write=request.method == "POST")
    anomaly_class = anomaly_class_get(project=project, class_id=class_id)
    if request.method == "POST":
        form = AnomalyClassDeleteForm(request.POST)
        try:
            if not form.is_valid():
                raise Invalid(form_error(form))
            changed = classes.anomaly_class_delete(
                anomaly_class=anomaly_class, masks_expected=form.cleaned_data["masks_expected"]
            )
        except KenpinError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(
                request,
                f"Class “{anomaly_class.name}” deleted; {_plural(changed, 'mask')} changed (its pixels are background now).",
            )
            return redirect(reverse("projects:settings", kwargs={"name": project.name}) + "#classes")
    using = masks_using_class(anomaly_class=anomaly_class)
    return render(
        request,
        "projects/class_delete.html",
        {"project": project, "anomaly_class": anomaly_class, "using": using[:24], "count": len(using)},
    )


# --- Upload -----------------------------------------------------------------------------------


@require_GET
def image_upload_page(request, name):
    project = project_get_for_user(user=request.user, name=name)
    return render(
        request,
        "projects/upload.html",
        {
            "project": project,
            **dataset_context(project),
            "zip_form": ZipImportForm(),
            "zip_imports": zip_import_list(project=project),
            "formats": ACCEPTED_FORMATS,
            "upload_config": {
                "url": reverse("projects:image_add", kwargs={"name": project.name}),
                "knownUrl": reverse("projects:images_known", kwargs={"name": project.name}),
                # Files kept in this browser for resuming are filed under the project and the
                # person, so that a shared computer never offers someone else's photos.
                "queue": f"{project.pk}:{request.user.pk}",
                "maxBytes": settings.KENPIN_MAX_UPLOAD_BYTES,
                "labelUrl": reverse("projects:images", kwargs={"name": project.name}),
            },
        },
    )


@require_POST
def image_add(request, name):
    """One uploaded image (the upload page's script sends each file on its own), answered in JSON."""
    project = project_get_for_user(user=request.user, name=name, write=True)
    form = ImageUploadForm(request.POST, request.FILES)
    if not form.is_valid():
        return json_error(Invalid(form_error(form)))
    try:
        mask = form.cleaned_data["mask"]
        image = images.dataset_add_image(
            project=project,
            data=upload_read(file=form.cleaned_data["file"]),
            name=form.cleaned_data["file"].name,
            label=form.cleaned_data["label"] or None,
            split=form.cleaned_data["split"] or Split.TRAIN,
            mask=upload_read(file=mask) if mask is not None else None,
            mask_class=form.cleaned_data["mask_class"],
            user=request.user,
        )
    except KenpinError as exc:
        return json_error(exc)
    return JsonResponse(
        {
            "id": image.pk,
            "name": str(image),
            "label": image.label,
            "split": image.dataset.split,
            "unlike": image_unlike_training(project=project, image=image),
        },
        status=201,
    )


MAX_KNOWN_QUERY = 2000  # hashes per question; the upload page asks in batches


@require_POST
def images_known(request, name):
    """Which of the posted `sha256` values the project already has: the upload page asks before
    sending again what an interrupted upload may or may not have stored."""
    project = project_get_for_user(user=request.user, name=name, write=True)
    sha256s = request.POST.getlist("sha256")
    if len(sha256s) > MAX_KNOWN_QUERY:
        return json_error(Invalid(f"Ask about at most {MAX_KNOWN_QUERY} images at a time.", code="too_many"))
    return JsonResponse({"known": sorted(image_sha256s_present(project=project, sha256s=sha256s))})


@require_POST
def images_import(request, name):
    """A zip whose folders normal/ and anomaly/ label its images: checked and stored here, imported
    by a worker; the import's page follows its progress."""
    project = project_get_for_user(user=request.user, name=name, write=True)
    form = ZipImportForm(request.POST, request.FILES)
    if not form.is_valid():
        messages.error(request, form_error(form))
        return redirect("projects:upload", name=project.name)
    try:
        zip_import = imports.zip_import_start(
            project=project, file=form.cleaned_data["file"], split=form.cleaned_data["split"], user=request.user
        )
    except KenpinError as exc:
        messages.error(request, exc.message)
        return redirect("projects:upload", name=project.name)
    return redirect("projects:import", name=project.name, import_id=zip_import.pk)


@require_GET
def zip_import_page(request, name, import_id):
    """A zip import's progress and report; htmx polls the fragment until the import is final."""
    project = project_get_for_user(user=request.user, name=name)
    zip_import = zip_import_get(project=project, import_id=import_id)
    template = "projects/_import.html" if request.htmx else "projects/import.html"
    return render(request, template, {"project": project, "zip_import": zip_import})


# --- Label grid -------------------------------------------------------------------------------


@require_GET
def image_grid(request, name):
    project = project_get_for_user(user=request.user, name=name)
    filters = ImageFilterForm(request.GET).filters()
    paginator = Paginator(image_list(project=project, label=filters["label"], split=filters["split"]), IMAGES_PER_PAGE)
    page = paginator.get_page(filters["page"])
    query = {k: v for k, v in (("label", filters["label"]), ("split", filters["split"])) if v}
    return render(
        request,
        "projects/images.html",
        {
            "project": project,
            **dataset_context(project, filters),
            "page": page,
            "query": urlencode(query),
            "next_url": request.get_full_path(),
            "grid_config": {
                "label": reverse("projects:images_label", kwargs={"name": project.name}),
                "move": reverse("projects:images_move", kwargs={"name": project.name}),
                "delete": reverse("projects:images_delete", kwargs={"name": project.name}),
            },
        },
    )


@require_GET
def image_counts(request, name):
    """The counts bar of the label grid, fetched again by htmx after each change."""
    project = project_get_for_user(user=request.user, name=name)
    filters = ImageFilterForm(request.GET).filters()
    return render(request, "projects/_counts.html", {"project": project, **dataset_context(project, filters)})


def _images_action(request, name, form_class, action):
    """Run a change on many images: JSON for the grid's script, a redirect back for plain forms."""
    project = project_get_for_user(user=request.user, name=name, write=True)
    form = form_class(request.POST)
    fallback = reverse("projects:images", kwargs={"name": project.name})
    try:
        if not form.is_valid():
            raise Invalid(form_error(form))
        ids = form.cleaned_data["ids"]
        message = action(project, form.cleaned_data)
    except KenpinError as exc:
        if wants_json(request):
            return json_error(exc)
        messages.error(request, exc.message)
        return redirect_back(request, fallback)
    if wants_json(request):
        return JsonResponse({"message": message, "images": image_states(project=project, image_ids=ids)})
    messages.success(request, message)
    return redirect_back(request, fallback)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


@require_POST
def images_label(request, name):
    def label(project, data):
        changed = images.images_set_label(
            project=project, image_ids=data["ids"], label=data["label"], user=request.user
        )
        return f"{_plural(changed, 'image')} labeled {Label(data['label']).label.lower()}."

    return _images_action(request, name, ImagesLabelForm, label)


@require_POST
def images_move(request, name):
    def move(project, data):
        moved = images.images_move(project=project, image_ids=data["ids"], split=data["split"], user=request.user)
        return f"{_plural(moved, 'image')} moved to the {Split(data['split']).label.lower()}."

    return _images_action(request, name, ImagesMoveForm, move)


@require_POST
def images_delete(request, name):
    def delete(project, data):
        deleted = images.images_delete(project=project, image_ids=data["ids"], user=request.user)
        return f"{_plural(deleted, 'image')} deleted."

    return _images_action(request, name, ImagesDeleteForm, delete)


@require_POST
def test_dataset_delete(request, name):
    project = project_get_for_user(user=request.user, name=name, write=True)
    images.dataset_delete_test(project=project, user=request.user)
    messages.success(
        request,
        "The test dataset was removed; its images are back in the training dataset. "
        "Models will be evaluated by cross-validation.",
    )
    return redirect_back(request, reverse("project", kwargs={"name": project.name}))


@require_POST
def test_dataset_keep_aside(request, name):
    project = project_get_for_user(user=request.user, name=name, write=True)
    try:
        normal, anomalous = images.dataset_keep_test_aside(project=project, user=request.user)
    except KenpinError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request,
            f"{normal} normal and {anomalous} anomalous photos, chosen at random, are now the test dataset. "
            "The next version you train is measured on them, photos it never saw.",
        )
    return redirect_back(request, reverse("project", kwargs={"name": project.name}))


# --- Activity log ------------------------------------------------------------------------------

ACTIVITY_PER_PAGE = 100


@require_GET
def activity_page(request, name):
    """The project's whole activity log, newest first, for every member."""
    project = project_get_for_user(user=request.user, name=name)
    page = Paginator(activity.activity_list(project=project), ACTIVITY_PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "projects/activity.html", {"project": project, "page": page})


@require_GET
def activity_csv(request, name):
    """The whole log as CSV, streamed (a busy project's log may be long)."""
    project = project_get_for_user(user=request.user, name=name)
    response = StreamingHttpResponse(
        activity.csv_lines(activity.activity_csv_rows(project=project)), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{project.name}-activity.csv"'
    return response


# --- One image --------------------------------------------------------------------------------


@require_GET
def image_detail(request, name, image_id):
    """The larger view of one image, with its mask, label and the grid's filters kept."""
    project = project_get_for_user(user=request.user, name=name)
    image = image_get(project=project, image_id=image_id)
    filters = ImageFilterForm(request.GET).filters()
    query = urlencode({k: v for k, v in (("label", filters["label"]), ("split", filters["split"])) if v})
    previous, following = image_neighbours(project=project, image=image, label=filters["label"], split=filters["split"])
    return render(
        request,
        "projects/image.html",
        {
            "project": project,
            "image": image,
            "query": query,
            "previous": previous,
            "following": following,
            "next_url": request.get_full_path(),
            "mask_form": MaskForm(),
            "painter_classes": mask_classes(project=project),
            "mask_classes_present": image_mask_classes(image=image),
        },
    )


@require_POST
def image_mask_set(request, name, image_id):
    """An uploaded or painted mask (the painter sends one colour PNG, and wants JSON back)."""
    project = project_get_for_user(user=request.user, name=name, write=True)
    image = image_get(project=project, image_id=image_id)
    form = MaskForm(request.POST, request.FILES)
    back = reverse("projects:image", kwargs={"name": project.name, "image_id": image.pk})
    try:
        if not form.is_valid():
            raise Invalid(form_error(form))
        image = classes.image_set_mask(
            image=image,
            mask=upload_read(file=form.cleaned_data["mask"]),
            class_name=form.cleaned_data["mask_class"],
            user=request.user,
        )
    except KenpinError as exc:
        if wants_json(request):
            return json_error(exc)
        messages.error(request, f"The mask was not saved: {exc.message}")
        return redirect_back(request, back)
    message = "Defect mask saved; the image is labeled anomaly."
    if wants_json(request):
        return JsonResponse({"message": message, "id": image.pk, "label": image.label})
    messages.success(request, message)
    return redirect_back(request, back)


@require_POST
def image_mask_remove(request, name, image_id):
    project = project_get_for_user(user=request.user, name=name, write=True)
    image = image_get(project=project, image_id=image_id)
    try:
        classes.image_remove_mask(image=image)
    except KenpinError as exc:
        if wants_json(request):
            return json_error(exc)
        messages.error(request, exc.message)
    else:
        if wants_json(request):
            return JsonResponse({"message": "Mask removed; the label is unchanged.", "id": image.pk})
        messages.success(request, "Mask removed; the label is unchanged.")
    return redirect_back(request, reverse("projects:image", kwargs={"name": project.name, "image_id": image.pk}))


MASK_STYLES = {"color", "binary", "overlay"}


@require_GET
def image_mask(request, name, image_id):
    """An image's mask drawn from its class indices: ?style=color (default, Lookout for
    Vision's colours on white), binary or overlay (colours on transparent, for the page)."""
    project = project_get_for_user(user=request.user, name=name)
    image = image_get(project=project, image_id=image_id)
    style = request.GET.get("style", "color")
    if style not in MASK_STYLES:
        style = "color"
    response = HttpResponse(image_mask_png(image=image, style=style), content_type="image/png")
    # Painting changes the mask behind the same address: never show a stale one.
    response["Cache-Control"] = "private, no-cache"
    if request.GET.get("download"):
        response["Content-Disposition"] = f'attachment; filename="mask-{image.pk}.png"'
    return response


@require_GET
def image_file(request, name, image_id, kind):
    """The image itself, its thumbnail or its mask, for members of its project only."""
    project = project_get_for_user(user=request.user, name=name)
    image = image_get(project=project, image_id=image_id)
    field = {"file": image.file, "thumbnail": image.thumbnail}[kind]
    return storage_file_response(field)
