from dataclasses import dataclass

from django.db.models import QuerySet
from django.http import Http404

from projects.models import Label, Project
from projects.selectors import dataset_counts, project_has_test_dataset
from training.models import ModelVersion, ModelVersionImage

# Lookout for Vision's minimums, kept: fewer images give models that cannot be trusted.
MIN_TRAIN_NORMAL_ALONE = 20
MIN_TRAIN_ANOMALY_ALONE = 10
MIN_TRAIN_NORMAL_WITH_TEST = 10
MIN_TEST_NORMAL = 10
MIN_TEST_ANOMALY = 10


@dataclass(frozen=True)
class Readiness:
    ready: bool
    missing: list[str]  # sentences saying what to add, empty when ready
    uses_test_dataset: bool


def training_readiness(*, project: Project) -> Readiness:
    """Whether the project has enough labeled images to train, and if not, exactly what is missing."""
    counts = dataset_counts(project=project)
    train, test = counts["train"], counts["test"]
    with_test = project_has_test_dataset(project=project)
    needs = (
        [("training", "normal", train.normal, MIN_TRAIN_NORMAL_WITH_TEST),
         ("test", "normal", test.normal, MIN_TEST_NORMAL),
         ("test", "anomalous", test.anomaly, MIN_TEST_ANOMALY)]
        if with_test
        else [("training", "normal", train.normal, MIN_TRAIN_NORMAL_ALONE),
              ("training", "anomalous", train.anomaly, MIN_TRAIN_ANOMALY_ALONE)]
    )
    missing = [
        f"Add {minimum - have} more {kind} image{'s' if minimum - have > 1 else ''} to the {split} dataset "
        f"(it has {have}, training needs at least {minimum})."
        for split, kind, have, minimum in needs
        if have < minimum
    ]
    return Readiness(ready=not missing, missing=missing, uses_test_dataset=with_test)


def model_version_list(*, project: Project) -> QuerySet[ModelVersion]:
    return ModelVersion.objects.filter(project=project).order_by("-version")


def model_version_get(*, project: Project, version: int) -> ModelVersion:
    mv = ModelVersion.objects.filter(project=project, version=version).first()
    if mv is None:
        raise Http404
    return mv


def model_version_results(*, model_version: ModelVersion) -> QuerySet[ModelVersionImage]:
    """The evaluated images of a version with their scores, for per-image results."""
    return model_version.images.filter(score__isnull=False).order_by("-score")


def model_version_performance(*, model_version: ModelVersion) -> dict | None:
    """How the version performs at its *current* threshold; None until it is trained.

    Precision, recall, F1 and the confusion matrix are recomputed from the evaluated images'
    scores, so that they follow a threshold moved after training; ROC AUC and average precision
    do not depend on the threshold and come from the training's metrics.
    """
    if not model_version.metrics or model_version.threshold is None:
        return None
    from engine.metrics import metrics_at_threshold

    rows = list(model_version.images.filter(score__isnull=False).values_list("score", "label"))
    at_threshold = metrics_at_threshold(
        [score for score, _ in rows], [int(label == Label.ANOMALY) for _, label in rows], model_version.threshold
    )
    return {
        **at_threshold,
        "roc_auc": model_version.metrics.get("roc_auc"),
        "average_precision": model_version.metrics.get("average_precision"),
        "threshold": model_version.threshold,
        "trained_threshold": model_version.trained_threshold,
        "evaluated_images": len(rows),
    }
