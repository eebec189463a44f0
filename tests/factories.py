"""Rows for tests. Users come from factory_boy; projects and images are made through the
services, so that tests see the same rows people make. Images are real, made by Pillow."""

import io
import itertools

import factory
import numpy as np
from django.contrib.auth import get_user_model
from PIL import Image as PILImage

from projects.images import dataset_add_image
from projects.models import Role
from projects.projects import member_set, project_create

PASSWORD = "a-long-test-password"
_counter = itertools.count()


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def save_password(obj, create, extracted, **kwargs):
        if create:
            obj.save()


def image_bytes(
    *, width: int = 64, height: int = 48, fmt: str = "PNG", mode: str = "RGB", seed: int | None = None
) -> bytes:
    """A real encoded image of random pixels; each call gives different bytes unless seeded."""
    rng = np.random.default_rng(next(_counter) if seed is None else seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    array = rng.integers(0, 256, size=(height, width, channels), dtype=np.uint8)
    image = PILImage.fromarray(array.squeeze(-1) if channels == 1 else array, mode=mode)
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def make_project(*, owner, name: str | None = None, **members_by_role):
    """A project owned by `owner`; keyword arguments add members, e.g. viewer=user."""
    project = project_create(user=owner, name=name or f"project-{next(_counter)}")
    for role, member in members_by_role.items():
        member_set(project=project, username=member.username, role=Role(role))
    return project


def add_image(
    project,
    *,
    label: str = "unlabeled",
    split: str = "train",
    user=None,
    mask: bytes | None = None,
    name: str = "generated.png",
    **kwargs,
):
    return dataset_add_image(
        project=project, data=image_bytes(**kwargs), name=name, label=label, split=split, user=user, mask=mask
    )


def fill_project(project, *, normal: int = 20, anomaly: int = 10, split: str = "train") -> list:
    """Add `normal` and `anomaly` generated images to a dataset (by default just enough to train)."""
    return [add_image(project, label="normal", split=split, name=f"n{i}.png") for i in range(normal)] + [
        add_image(project, label="anomaly", split=split, name=f"a{i}.png") for i in range(anomaly)
    ]


def make_version(project, **fields):
    """A bare model version row of `project` (QUEUED unless `status` says otherwise), numbered next."""
    from training.models import ModelVersion

    return ModelVersion.objects.create(
        project=project, version=ModelVersion.objects.count() + 1, backbone="lite0", **fields
    )


def heatmap_png(*, width: int = 64, height: int = 48) -> bytes:
    """An RGBA overlay like the engine's heatmaps: transparent except for a red blob."""
    overlay = np.zeros((height, width, 4), dtype=np.uint8)
    overlay[height // 4 : height // 2, width // 4 : width // 2] = (255, 0, 0, 160)
    out = io.BytesIO()
    PILImage.fromarray(overlay, mode="RGBA").save(out, format="PNG")
    return out.getvalue()


def make_trained_version(
    project,
    *,
    scores: dict,
    version: int | None = None,
    threshold: float = 0.5,
    evaluation: str = "cross_validation",
    split: str | None = None,
    **fields,
):
    """A TRAINED version as the training task leaves it: a snapshot row per image with its
    score and heatmap. `scores` maps the project's images to their evaluated score (None for an
    image that was trained on but not evaluated)."""
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage
    from django.db.models import Max
    from django.utils import timezone

    from training.models import ModelVersion, ModelVersionImage, Status

    now = timezone.now()
    mv = ModelVersion.objects.create(
        project=project,
        version=version or (ModelVersion.objects.filter(project=project).aggregate(n=Max("version"))["n"] or 0) + 1,
        backbone=fields.pop("backbone", "lite0"),
        status=Status.TRAINED,
        evaluation=evaluation,
        threshold=threshold,
        trained_threshold=fields.pop("trained_threshold", threshold),
        started_at=now - timezone.timedelta(seconds=20),
        ended_at=now,
        metrics=fields.pop(
            "metrics",
            {
                "roc_auc": 0.9,
                "average_precision": 0.85,
                "roc_curve": {"fpr": [0, 0.5, 1], "tpr": [0, 0.9, 1]},
                "pr_curve": {"precision": [1, 0.8, 0.5], "recall": [0, 0.9, 1]},
            },
        ),
        **fields,
    )
    for image, score in scores.items():
        row = ModelVersionImage.objects.create(
            model_version=mv,
            image=image,
            sha256=image.sha256,
            original_name=image.original_name,
            split=image.dataset.split if split is None else split,
            label=image.label,
            score=score,
        )
        if score is not None:
            row.heatmap = default_storage.save(
                f"projects/{project.pk}/models/{mv.version}/{row.pk}.png", ContentFile(heatmap_png())
            )
            row.save(update_fields=["heatmap"])
    return mv
