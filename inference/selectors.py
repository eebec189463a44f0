import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db.models import Avg, Count, Q, QuerySet
from django.db.models.fields.files import FieldFile
from django.db.models.functions import TruncDay, TruncHour
from django.http import Http404
from django.utils import timezone

from engine.metrics import wilson_interval
from inference.models import DetectionRecord, TrialDetection, TrialImage, Verdict
from projects.masks import MaskClass
from projects.models import IMPLICIT_CLASS_COLOR, IMPLICIT_CLASS_NAME, Project
from training.models import ModelVersion


def trial_list(*, project: Project) -> QuerySet[TrialDetection]:
    """The project's trials, newest first, with how many images each has, flagged and verified."""
    return (
        TrialDetection.objects.filter(project=project)
        .select_related("model_version")
        .annotate(
            n_images=Count("images"),
            n_anomalous=Count("images", filter=Q(images__is_anomalous=True)),
            n_verified=Count("images", filter=~Q(images__verdict=Verdict.UNVERIFIED)),
        )
    )


def trial_get(*, project: Project, trial_id: int) -> TrialDetection:
    trial = TrialDetection.objects.filter(project=project, pk=trial_id).select_related("model_version").first()
    if trial is None:
        raise Http404
    return trial


def trial_image_get(*, trial: TrialDetection, trial_image_id: int) -> TrialImage:
    row = trial.images.filter(pk=trial_image_id).select_related("image").first()
    if row is None:
        raise Http404
    return row


TRIAL_FILTERS = {
    "anomalous": Q(is_anomalous=True),
    "normal": Q(is_anomalous=False),
    "unverified": Q(verdict=Verdict.UNVERIFIED, is_anomalous__isnull=False),
    "verified": ~Q(verdict=Verdict.UNVERIFIED),
    "unlike": Q(unlike=True),
}


def trial_images(*, trial: TrialDetection, show: str = "") -> QuerySet[TrialImage]:
    """The trial's images, optionally only those `show` names (a key of TRIAL_FILTERS)."""
    images = trial.images.select_related("image")
    return images.filter(TRIAL_FILTERS[show]) if show in TRIAL_FILTERS else images


def trial_image_file(*, trial_image: TrialImage, kind: str) -> FieldFile | None:
    """The photo, thumbnail, heatmap or mask of a trial image: its own upload, or the project image it uses."""
    if kind == "heatmap":
        return trial_image.heatmap
    if kind == "mask":
        return trial_image.predicted_mask
    own = trial_image.file if kind == "file" else trial_image.thumbnail
    if own:
        return own
    if trial_image.image is None:
        return None
    return trial_image.image.file if kind == "file" else trial_image.image.thumbnail


@dataclass(frozen=True)
class TrialSummary:
    total: int
    anomalous: int
    normal: int
    unreadable: int
    verified: int
    ready_to_add: int  # verified, not yet added to the dataset
    unlike: int  # unlike the training photos: their verdicts may not apply
    correct: int = 0  # verified as correct

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.verified if self.verified else None

    @property
    def accuracy_interval(self) -> tuple[float, float] | None:
        """95 % Wilson interval of the share of verified predictions that were right."""
        return wilson_interval(self.correct, self.verified)


def trial_summary(*, trial: TrialDetection) -> TrialSummary:
    counts = trial.images.aggregate(
        total=Count("id"),
        anomalous=Count("id", filter=Q(is_anomalous=True)),
        normal=Count("id", filter=Q(is_anomalous=False)),
        unreadable=Count("id", filter=~Q(error="")),
        verified=Count("id", filter=~Q(verdict=Verdict.UNVERIFIED)),
        ready_to_add=Count("id", filter=~Q(verdict=Verdict.UNVERIFIED) & Q(added_to_dataset=False)),
        unlike=Count("id", filter=Q(unlike=True)),
        correct=Count("id", filter=Q(verdict=Verdict.CORRECT)),
    )
    return TrialSummary(**counts)


# --- Operations: what a hosted model has been seeing -----------------------------------------------

# period -> (bucket length, how many buckets the view shows)
OPERATION_PERIODS = {"hour": (timedelta(hours=1), 48), "day": (timedelta(days=1), 30)}
RECENT_PHOTOS = 12


@dataclass
class OperationsBucket:
    start: datetime  # UTC
    calls: int
    anomalous: int
    unlike: int
    latency_ms: float | None  # mean of the bucket's calls

    @property
    def anomalous_share(self) -> float | None:
        return self.anomalous / self.calls if self.calls else None


@dataclass
class Operations:
    period: str
    buckets: list[OperationsBucket]  # oldest first, empty ones included
    calls: int  # in the whole window
    anomalous: int
    unlike: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    recent_anomalous: list[DetectionRecord]  # newest first, with their photos and masks
    last_call_at: datetime | None

    @property
    def anomalous_share(self) -> float | None:
        return self.anomalous / self.calls if self.calls else None


def _floor(moment: datetime, step: timedelta) -> datetime:
    moment = moment.astimezone(UTC)
    if step >= timedelta(days=1):
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return moment.replace(minute=0, second=0, microsecond=0)


def _percentile(records: QuerySet[DetectionRecord], count: int, q: float) -> float | None:
    """The q-quantile (nearest rank) of the records' latencies, read from the database by rank."""
    if not count:
        return None
    rank = min(count - 1, max(0, math.ceil(q * count) - 1))
    return records.order_by("latency_ms").values_list("latency_ms", flat=True)[rank]


def model_version_operations(*, model_version: ModelVersion, period: str = "hour", now=None) -> Operations:
    """Detect calls of a version over the last 48 hours (period "hour") or 30 days ("day"), by
    hour or day in UTC: how many, the share flagged anomalous, mean latency, photos unlike the
    training photos; overall median and 95th-percentile latency; the latest anomalous photos."""
    step, count = OPERATION_PERIODS[period]
    end = _floor(now or timezone.now(), step) + step
    start = end - step * count
    records = DetectionRecord.objects.filter(model_version=model_version, at__gte=start, at__lt=end)
    trunc = TruncDay("at", tzinfo=UTC) if period == "day" else TruncHour("at", tzinfo=UTC)
    rows = {
        row["bucket"]: row
        for row in records.annotate(bucket=trunc)
        .values("bucket")
        .annotate(
            calls=Count("id"),
            anomalous=Count("id", filter=Q(is_anomalous=True)),
            unlike=Count("id", filter=Q(unlike=True)),
            latency=Avg("latency_ms"),
        )
        .order_by("bucket")
    }
    buckets = []
    for i in range(count):
        moment = start + step * i
        row = rows.get(moment, {})
        buckets.append(
            OperationsBucket(
                start=moment,
                calls=row.get("calls", 0),
                anomalous=row.get("anomalous", 0),
                unlike=row.get("unlike", 0),
                latency_ms=row.get("latency"),
            )
        )
    calls = sum(b.calls for b in buckets)
    last = DetectionRecord.objects.filter(model_version=model_version).order_by("-at").values_list("at", flat=True)
    return Operations(
        period=period,
        buckets=buckets,
        calls=calls,
        anomalous=sum(b.anomalous for b in buckets),
        unlike=sum(b.unlike for b in buckets),
        latency_p50_ms=_percentile(records, calls, 0.5),
        latency_p95_ms=_percentile(records, calls, 0.95),
        recent_anomalous=list(
            DetectionRecord.objects.filter(model_version=model_version)
            .exclude(photo="")
            .order_by("-at", "-id")[:RECENT_PHOTOS]
        ),
        last_call_at=last.first(),
    )


def detection_record_get(*, model_version: ModelVersion, record_id: int) -> DetectionRecord:
    record = DetectionRecord.objects.filter(model_version=model_version, pk=record_id).first()
    if record is None:
        raise Http404
    return record


def detection_csv_rows(*, model_version: ModelVersion):
    """Every kept record of the version, newest first, as CSV rows (header first)."""
    yield ["time_utc", "version", "is_anomalous", "score", "anomalous_fraction", "latency_ms", "inference_ms", "unlike"]
    records = DetectionRecord.objects.filter(model_version=model_version).order_by("-at", "-id")
    for r in records.iterator(chunk_size=2000):
        yield [
            r.at.astimezone(UTC).isoformat(timespec="milliseconds"),
            model_version.version,
            int(r.is_anomalous),
            f"{r.score:.5f}",
            f"{r.anomalous_fraction:.5f}",
            r.latency_ms,
            r.inference_ms,
            "" if r.unlike is None else int(r.unlike),
        ]


def trial_mask_classes(*, trial: TrialDetection) -> list[MaskClass]:
    """The classes of a trial's masks: its version's, index k for the version's k-th class, in the
    colours the version recorded (one implicit class for a version that knows none)."""
    classes = trial.model_version.classes or [{"name": IMPLICIT_CLASS_NAME, "color": IMPLICIT_CLASS_COLOR}]
    return [MaskClass(index=k, name=c["name"], color=c["color"]) for k, c in enumerate(classes, start=1)]


def trial_is_segmentation(*, trial: TrialDetection) -> bool:
    return trial.model_version.kind == "segmentation"
