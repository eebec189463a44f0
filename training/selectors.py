from collections import defaultdict
from dataclasses import dataclass

from django.db.models import QuerySet
from django.http import Http404

from core.prepared import PreparedQuery
from engine.metrics import metrics_at_threshold, threshold_intervals
from engine.model import confidence
from projects.models import Label, Project
from training.models import USABLE_STATUSES, Evaluation, ModelVersion, ModelVersionImage


def model_version_list(*, project: Project) -> QuerySet[ModelVersion]:
    return ModelVersion.objects.filter(project=project).order_by("-version")


def model_version_list_with_performance(*, project: Project) -> list[ModelVersion]:
    """The versions, newest first, each with `confusion` at its threshold in use (None until trained).

    The evaluated images' scores and labels of every version come in one query; the counts are
    the engine's (confusion_at), so that the list, the version page and the API agree.
    """
    versions = list(model_version_list(project=project))
    evaluated = defaultdict(list)
    rows = ModelVersionImage.objects.filter(model_version__project=project, score__isnull=False)
    for model_version_id, score, label in rows.values_list("model_version_id", "score", "label"):
        evaluated[model_version_id].append((score, label))
    for mv in versions:
        mv.confusion = None
        if mv.is_usable:
            scores_labels = evaluated[mv.pk]
            mv.confusion = confusion_at(
                scores=[score for score, _ in scores_labels],
                anomalous=[label == Label.ANOMALY for _, label in scores_labels],
                threshold=_threshold(mv),
            )
    return versions


# (project, version) is unique: one row or none. Compiled once, not on every detect call (core.prepared).
_VERSION = PreparedQuery(
    lambda project_id, version: ModelVersion.objects.filter(project_id=project_id, version=version),
    project_id=ModelVersion._meta.get_field("project"),
    version=ModelVersion._meta.get_field("version"),
)


def model_version_get(*, project: Project, version: int) -> ModelVersion:
    try:
        return _VERSION.get(project_id=project.pk, version=version)
    except ModelVersion.DoesNotExist:
        raise Http404 from None


def model_version_results(*, model_version: ModelVersion) -> QuerySet[ModelVersionImage]:
    """The evaluated images of a version with their scores, for per-image results."""
    return model_version.images.filter(score__isnull=False).order_by("-score")


def model_version_result_get(*, model_version: ModelVersion, row_id: int) -> ModelVersionImage:
    row = model_version.images.filter(pk=row_id).first()
    if row is None:
        raise Http404
    return row


def model_version_list_usable(*, project: Project) -> QuerySet[ModelVersion]:
    """Versions with a trained model, newest first: the ones a trial detection can use."""
    return model_version_list(project=project).filter(status__in=USABLE_STATUSES)


# --- Results at the threshold in use ---------------------------------------------------------------


def _threshold(mv: ModelVersion) -> float:
    return mv.threshold if mv.threshold is not None else 0.5


def _flagged(score: float, threshold: float) -> bool:
    """The engine's decision rule (engine.metrics): an image is flagged when its score >= threshold."""
    return score >= threshold


@dataclass(frozen=True)
class Confusion:
    """The confusion matrix when flagging by the engine's rule, with the precision, recall and F1
    it gives, all as engine.metrics.metrics_at_threshold counts them (0 where undefined)."""

    tp: int
    fp: int
    tn: int
    fn: int
    precision: float
    recall: float
    f1: float

    @property
    def matrix(self) -> dict[str, int]:
        return {"tp": self.tp, "fp": self.fp, "tn": self.tn, "fn": self.fn}


def confusion_at(*, scores: list[float], anomalous: list[bool], threshold: float) -> Confusion:
    """The confusion matrix and its precision, recall and F1 for evaluated images at `threshold`."""
    metrics = metrics_at_threshold(scores, [int(a) for a in anomalous], threshold)
    return Confusion(
        **metrics["confusion_matrix"], precision=metrics["precision"], recall=metrics["recall"], f1=metrics["f1"]
    )


def _rows_confusion(rows: list[ModelVersionImage], threshold: float) -> Confusion:
    return confusion_at(
        scores=[row.score for row in rows], anomalous=[row.label == Label.ANOMALY for row in rows], threshold=threshold
    )


# Fewer evaluated photos than this and the page says plainly how little the numbers prove: on
# harder products a cross-validated F1 of 1.00 from 30-40 photos was 0.72 on 100 unseen ones.
SMALL_EVALUATION_PHOTOS = 100


@dataclass
class ResultsAtThreshold:
    rows: list[ModelVersionImage]  # evaluated images, highest score first
    confusion: Confusion  # at the version's threshold in use
    n_normal: int
    n_anomaly: int
    # 95 % intervals [low, high] (None where undefined) of precision, recall, f1 at the threshold
    # in use, and of the threshold-free roc_auc and average_precision from training.
    intervals: dict[str, list[float] | None]
    cross_validated: bool

    @property
    def n_evaluated(self) -> int:
        return len(self.rows)

    @property
    def small(self) -> bool:
        return self.n_evaluated < SMALL_EVALUATION_PHOTOS

    @property
    def rests_on(self) -> str:
        """What the numbers come from, in words: "from 30 photos, cross-validated"."""
        photos = f"{self.n_evaluated} photo{'' if self.n_evaluated == 1 else 's'}"
        return f"from {photos}, cross-validated" if self.cross_validated else f"from {photos} of the test dataset"


def _intervals(model_version: ModelVersion, rows: list[ModelVersionImage], threshold: float) -> dict:
    """Intervals at `threshold` from the evaluated rows (the same bootstrap as training's, so
    equal to training's own at the trained threshold), plus training's threshold-free ones."""
    ci = threshold_intervals([row.score for row in rows], [int(row.label == Label.ANOMALY) for row in rows], threshold)
    trained = (model_version.metrics or {}).get("ci") or {}
    for metric in ("roc_auc", "average_precision", "mask_iou"):
        ci[metric] = trained.get(metric)
    return ci


def model_version_results_at_threshold(*, model_version: ModelVersion) -> ResultsAtThreshold:
    """Per-image results and the confusion matrix at the threshold the version uses now.

    The engine's metrics are at the trained threshold; people may have moved it since, so the
    matrix is counted again from the evaluated images' scores, which never change.
    """
    rows = list(model_version_results(model_version=model_version).select_related("image"))
    threshold = _threshold(model_version)
    for row in rows:
        row.predicted_anomaly = _flagged(row.score, threshold)
        row.is_error = row.predicted_anomaly != (row.label == Label.ANOMALY)
        row.confidence = confidence(row.score, threshold)
    return ResultsAtThreshold(
        rows=rows,
        confusion=_rows_confusion(rows, threshold),
        n_normal=sum(1 for row in rows if row.label == Label.NORMAL),
        n_anomaly=sum(1 for row in rows if row.label == Label.ANOMALY),
        intervals=_intervals(model_version, rows, threshold) if rows else {},
        cross_validated=model_version.evaluation == Evaluation.CROSS_VALIDATION,
    )


def model_version_performance(*, model_version: ModelVersion) -> dict | None:
    """The API's summary of how the version performs at its threshold in use; None until trained.

    Precision, recall, F1 and the confusion matrix are counted again at the current threshold
    (the engine's metrics_at_threshold), so that they follow a threshold moved after training; ROC AUC and average
    precision do not depend on the threshold and come from the training's metrics. `ci` holds
    the 95 % intervals of precision, recall and F1 from the same evaluated images at this
    threshold (engine.metrics.threshold_intervals) and training's intervals of the others.
    Fewer than SMALL_EVALUATION_PHOTOS evaluated photos add a `warning` in words.
    """
    if not model_version.metrics or model_version.threshold is None:
        return None
    rows = list(model_version_results(model_version=model_version))
    confusion = _rows_confusion(rows, model_version.threshold)
    ci = _intervals(model_version, rows, model_version.threshold)
    small = len(rows) < SMALL_EVALUATION_PHOTOS
    return {
        "precision": confusion.precision,
        "recall": confusion.recall,
        "f1": confusion.f1,
        "confusion_matrix": confusion.matrix,
        "roc_auc": model_version.metrics.get("roc_auc"),
        "average_precision": model_version.metrics.get("average_precision"),
        "threshold": model_version.threshold,
        "trained_threshold": model_version.trained_threshold,
        "evaluated_images": len(rows),
        "evaluated_normal": sum(1 for row in rows if row.label == Label.NORMAL),
        "evaluated_anomalous": sum(1 for row in rows if row.label == Label.ANOMALY),
        "ci": ci,
        "small_evaluation": small,
        "warning": _small_warning(model_version, confusion, ci, len(rows)) if small else None,
    }


def _small_warning(model_version: ModelVersion, confusion: Confusion, ci: dict, n: int) -> str:
    how = "cross-validated" if model_version.evaluation == Evaluation.CROSS_VALIDATION else "on the test dataset"
    f1 = ci.get("f1")
    interval = f" (95 % interval {f1[0]:.2f}-{f1[1]:.3f})" if f1 else ""
    return (
        f"F1 {confusion.f1:.3f}{interval} from {n} photos, {how}: too few to rely on. "
        f"Keep a test dataset of at least {SMALL_EVALUATION_PHOTOS} photos aside for numbers you can trust."
    )


# --- Comparing versions --------------------------------------------------------------------------


@dataclass
class SnapshotChange:
    """What differs between two versions' snapshots and settings (older -> newer)."""

    older: ModelVersion
    newer: ModelVersion
    added: list[ModelVersionImage]  # newer's rows for images the older did not have
    removed: list[ModelVersionImage]  # older's rows for images the newer does not have
    relabeled: list[tuple[ModelVersionImage, ModelVersionImage]]  # (older row, newer row)
    moved: list[tuple[ModelVersionImage, ModelVersionImage]]  # between training and test
    settings: list[tuple[str, str, str]]  # (what, before, after)

    @property
    def data_changed(self) -> bool:
        return bool(self.added or self.removed or self.relabeled or self.moved)


@dataclass
class Cell:
    """One version's verdict on one image."""

    model_version: ModelVersion
    row: ModelVersionImage
    predicted_anomaly: bool
    correct: bool


@dataclass
class Disagreement:
    """An image that versions evaluated alike but predicted differently."""

    name: str
    label: str  # the actual label, as the newest of the versions had it
    cells: list[Cell]  # one per trained version, oldest first


@dataclass
class Column:
    """One version in the side-by-side table."""

    model_version: ModelVersion
    performance: ResultsAtThreshold | None  # None until trained
    snapshot: dict[str, dict[str, int]]  # split -> label -> number of images it was given


@dataclass
class Comparison:
    columns: list[Column]  # oldest first
    changes: list[SnapshotChange]  # each version against the one before it
    trained: int  # how many of the versions have a trained model
    evaluated_by_all: int  # images that every trained version evaluated
    disagreements: list[Disagreement]


def _describe_threshold(mv: ModelVersion) -> str:
    return "—" if mv.threshold is None else f"{mv.threshold:.3f}"


def _snapshot_change(
    older: ModelVersion, newer: ModelVersion, rows: dict[int, dict[str, ModelVersionImage]]
) -> SnapshotChange:
    before, after = rows[older.pk], rows[newer.pk]
    common = before.keys() & after.keys()
    settings = [
        (what, a, b)
        for what, a, b in (
            ("Backbone", older.backbone, newer.backbone),
            ("Threshold in use", _describe_threshold(older), _describe_threshold(newer)),
            ("Evaluated by", older.get_evaluation_display() or "—", newer.get_evaluation_display() or "—"),
        )
        if a != b
    ]
    return SnapshotChange(
        older=older,
        newer=newer,
        added=[after[sha] for sha in after.keys() - before.keys()],
        removed=[before[sha] for sha in before.keys() - after.keys()],
        relabeled=[(before[sha], after[sha]) for sha in common if before[sha].label != after[sha].label],
        moved=[(before[sha], after[sha]) for sha in common if before[sha].split != after[sha].split],
        settings=settings,
    )


def model_version_compare(*, project: Project, versions: list[int]) -> Comparison:
    """Two or more versions side by side: metrics, what changed between them, where they disagree.

    Versions are compared in the order they were trained. An image counts as a disagreement
    when every trained version among them evaluated it (scored it without having trained on
    it) and their predictions at their own thresholds differ.
    """
    mvs = list(ModelVersion.objects.filter(project=project, version__in=versions).order_by("version"))
    if len(mvs) != len(set(versions)):
        raise Http404
    rows = {
        mv.pk: {row.sha256: row for row in mv.images.select_related("image").order_by("original_name", "id")}
        for mv in mvs
    }
    columns = []
    for mv in mvs:
        snapshot = {split: {label: 0 for label in (Label.NORMAL, Label.ANOMALY)} for split in ("train", "test")}
        for row in rows[mv.pk].values():
            snapshot[row.split][row.label] += 1
        performance = model_version_results_at_threshold(model_version=mv) if mv.is_usable else None
        columns.append(Column(model_version=mv, performance=performance, snapshot=snapshot))

    trained = [mv for mv in mvs if mv.is_usable]
    evaluated = [{sha for sha, row in rows[mv.pk].items() if row.score is not None} for mv in trained]
    shared = set.intersection(*evaluated) if len(trained) >= 2 else set()
    disagreements = []
    newest = trained[-1] if trained else None
    for sha in sorted(shared, key=lambda s: rows[newest.pk][s].original_name):
        actual = rows[newest.pk][sha].label == Label.ANOMALY
        cells = []
        for mv in trained:
            predicted = _flagged(rows[mv.pk][sha].score, _threshold(mv))
            cells.append(
                Cell(model_version=mv, row=rows[mv.pk][sha], predicted_anomaly=predicted, correct=predicted == actual)
            )
        if len({cell.predicted_anomaly for cell in cells}) > 1:
            row = rows[newest.pk][sha]
            disagreements.append(Disagreement(name=row.original_name or sha[:12], label=row.label, cells=cells))

    return Comparison(
        columns=columns,
        changes=[_snapshot_change(a, b, rows) for a, b in zip(mvs, mvs[1:])],
        trained=len(trained),
        evaluated_by_all=len(shared),
        disagreements=disagreements,
    )


# --- Per-class results of segmentation versions ------------------------------------------------


@dataclass
class ClassResult:
    """How a segmentation version does on one anomaly class (engine.training.per_class_results)."""

    name: str
    color: str
    precision: float | None
    recall: float | None
    f1: float | None
    iou: float | None  # mean IoU of the class's pixels over the images that truly have it
    images: int  # evaluated images that truly have the class
    ci: dict  # {metric: [low, high] or None}, 95 %


def model_version_class_results(*, model_version: ModelVersion) -> list[ClassResult]:
    """Per-class precision, recall, F1 and mean IoU with their intervals, in the version's class
    order; empty for classification versions and versions trained before classes."""
    per_class = (model_version.metrics or {}).get("per_class") or {}
    colours = {c["name"]: c["color"] for c in model_version.classes or []}
    order = [c["name"] for c in model_version.classes or []] or list(per_class)
    return [
        ClassResult(
            name=name,
            color=colours.get(name, ""),
            precision=per_class[name].get("precision"),
            recall=per_class[name].get("recall"),
            f1=per_class[name].get("f1"),
            iou=per_class[name].get("iou"),
            images=per_class[name].get("images", 0),
            ci=per_class[name].get("ci") or {},
        )
        for name in order
        if name in per_class
    ]


def model_versions_class_rows(*, model_versions: list[ModelVersion]) -> list[tuple[str, str, list]]:
    """Compare-versions' per-class rows: (class name, colour, [ClassResult or None per version])."""
    results = [{r.name: r for r in model_version_class_results(model_version=mv)} for mv in model_versions]
    names: list[str] = []
    colours: dict[str, str] = {}
    for found in results:
        for name, result in found.items():
            if name not in names:
                names.append(name)
            colours.setdefault(name, result.color)
    return [(name, colours[name], [found.get(name) for found in results]) for name in names]
