"""Reads for the Lookout for Vision API: datasets as Lookout for Vision saw them, entries as
manifest lines, models with their options, tags and packaging jobs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Max, QuerySet
from django.http import Http404

from lookout.errors import DATASET, MODEL, MODEL_PACKAGE_JOB, ResourceNotFoundException
from lookout.manifests import entry_line, synthesized_source_ref
from lookout.models import DatasetJob, DatasetStatus, ModelOptions, ModelTag, PackagingJob
from projects.models import Image, Label, Project, Split
from projects.selectors import dataset_counts
from training.models import ModelVersion
from training.selectors import model_version_performance


@dataclass(frozen=True)
class DatasetView:
    """A dataset in Lookout for Vision's terms."""

    split: str
    created_at: datetime
    updated_at: datetime
    status: str
    status_message: str
    job: DatasetJob | None


def dataset_views(*, project: Project) -> dict[str, DatasetView]:
    """The project's datasets that exist for Lookout for Vision, by split.

    A dataset exists once CreateDataset made it (it then has a job) or, for projects made in
    the console, once it holds images: then it is CREATE_COMPLETE. Its status is its latest
    job's.
    """
    counts = dataset_counts(project=project)
    views = {}
    for split in Split.values:
        job = DatasetJob.objects.filter(project=project, split=split).first()
        has_images = counts[split].total > 0
        if job is None and not has_images:
            continue
        dataset = project.datasets.filter(split=split).first()
        created = dataset.created_at if dataset else project.created_at
        if job is None:
            views[split] = DatasetView(split, created, created, DatasetStatus.CREATE_COMPLETE, "", None)
        else:
            first = DatasetJob.objects.filter(project=project, split=split).order_by("created_at", "id").first()
            views[split] = DatasetView(
                split, first.created_at, job.ended_at or job.created_at, job.status, job.status_message, job
            )
    return views


def dataset_view_get(*, project: Project, split: str) -> DatasetView:
    view = dataset_views(project=project).get(split)
    if view is None:
        raise ResourceNotFoundException(
            f"The project {project.name} has no {split} dataset.", resource_id=split, resource_type=DATASET
        )
    return view


def dataset_job_running(*, project: Project) -> DatasetJob | None:
    return DatasetJob.objects.filter(
        project=project, status__in=(DatasetStatus.CREATE_IN_PROGRESS, DatasetStatus.UPDATE_IN_PROGRESS)
    ).first()


def dataset_job_list(*, project: Project) -> QuerySet[DatasetJob]:
    return DatasetJob.objects.filter(project=project)


def dataset_job_get(*, project: Project, job_id: int) -> DatasetJob:
    job = DatasetJob.objects.filter(project=project, pk=job_id).first()
    if job is None:
        raise Http404
    return job


def dataset_entries(
    *,
    project: Project,
    split: str,
    labeled: bool | None = None,
    anomaly_class: str | None = None,
    created_before: datetime | None = None,
    created_after: datetime | None = None,
    source_ref_contains: str | None = None,
) -> QuerySet[Image]:
    """The images of a dataset under ListDatasetEntries' filters, with what their lines need."""
    images = Image.objects.filter(project=project, dataset__split=split).select_related("lookout_source", "project")
    if labeled is True:
        images = images.exclude(label=Label.UNLABELED)
    elif labeled is False:
        images = images.filter(label=Label.UNLABELED)
    if anomaly_class:
        images = images.filter(label=anomaly_class)
    if created_before:
        images = images.filter(uploaded_at__lt=created_before)
    if created_after:
        images = images.filter(uploaded_at__gt=created_after)
    if source_ref_contains:
        # The stored source-ref when the image was imported, else the one Kenpin makes up.
        images = [image for image in images.order_by("id") if source_ref_contains in image_source_ref(image=image)]
        return Image.objects.filter(pk__in=[image.pk for image in images]).select_related("lookout_source", "project")
    return images


def image_source_ref(*, image: Image) -> str:
    source = getattr(image, "lookout_source", None)
    return source.source_ref if source else synthesized_source_ref(image)


def image_manifest_line(*, image: Image, mask_ref: str | None = None) -> str:
    """An image as Lookout for Vision's JSON line: its source-ref, label and, with a mask, the
    mask's reference and colour map."""
    source = getattr(image, "lookout_source", None)
    label = None if image.label == Label.UNLABELED else image.label
    return entry_line(
        source_ref=image_source_ref(image=image),
        label=label,
        label_attribute=source.label_attribute if source else "anomaly-label",
        mask_ref=(
            mask_ref or (source.mask_ref if source and source.mask_ref else synthesized_source_ref(image, mask=True))
        )
        if image.mask
        else None,
        created_at=image.uploaded_at,
    )


def model_version_resolve(*, project: Project, version: str) -> ModelVersion:
    """A version by its number, or the newest for "latest"; ResourceNotFoundException otherwise."""
    versions = ModelVersion.objects.filter(project=project)
    if version == "latest":
        number = versions.aggregate(n=Max("version"))["n"]
        mv = versions.filter(version=number).first() if number else None
    else:
        mv = versions.filter(version=int(version)).first()
    if mv is None:
        raise ResourceNotFoundException(
            f"The project {project.name} has no model version {version}.",
            resource_id=f"{project.name}/{version}",
            resource_type=MODEL,
        )
    return mv


def model_options(*, model_version: ModelVersion) -> ModelOptions | None:
    return ModelOptions.objects.filter(model_version=model_version).first()


def model_tags(*, model_version: ModelVersion) -> list[dict]:
    return [{"Key": tag.key, "Value": tag.value} for tag in ModelTag.objects.filter(model_version=model_version)]


def packaging_job_list(*, project: Project) -> QuerySet[PackagingJob]:
    return PackagingJob.objects.filter(project=project).select_related("model_version")


def packaging_job_get(*, project: Project, name: str) -> PackagingJob:
    job = packaging_job_list(project=project).filter(name=name).first()
    if job is None:
        raise ResourceNotFoundException(
            f"The project {project.name} has no model packaging job {name}.",
            resource_id=name,
            resource_type=MODEL_PACKAGE_JOB,
        )
    return job


def manifest_lines(*, project: Project, split: str) -> list[str]:
    return [image_manifest_line(image=image) for image in dataset_entries(project=project, split=split).order_by("id")]


def job_problems_text(job: DatasetJob, limit: int = 20) -> str:
    return "; ".join(
        f"line {p['line']}" + (f" ({p['source_ref']})" if p.get("source_ref") else "") + f": {p['message']}"
        for p in job.problems[:limit]
    ) + (f"; and {len(job.problems) - limit} more" if len(job.problems) > limit else "")


def evaluation_manifest_lines(*, model_version: ModelVersion) -> list[str]:
    """The evaluated images of a version as manifest lines with the model's prediction beside
    the label (`anomaly-label-detected`), as CreateModel's OutputConfig receives them."""
    # Imported here: engine.model loads onnxruntime, which the web process does not need otherwise.
    from engine.model import confidence

    threshold = model_version.threshold if model_version.threshold is not None else 0.5
    lines = []
    rows = model_version.images.filter(score__isnull=False).select_related("image__lookout_source", "image__project")
    for row in rows.order_by("id"):
        ref = (
            image_source_ref(image=row.image)
            if row.image
            else f"kenpin://{model_version.project.name}/deleted/{row.sha256}"
        )
        line = json.loads(entry_line(source_ref=ref, label=row.label, created_at=model_version.ended_at))
        predicted = "anomaly" if row.score >= threshold else "normal"
        line["anomaly-label-detected"] = 1 if predicted == "anomaly" else 0
        line["anomaly-label-detected-metadata"] = {
            "class-name": predicted,
            "confidence": confidence(row.score, threshold),
            "score": row.score,
            "human-annotated": "no",
            "job-name": f"training-job/{model_version.project.name}-{model_version.version}",
            "type": "groundtruth/image-classification",
            "dataset": row.split,
        }
        lines.append(json.dumps(line))
    return lines


def evaluation_result(*, model_version: ModelVersion) -> dict:
    performance = model_version_performance(model_version=model_version) or {}
    return {
        "Version": 1,
        "ProjectName": model_version.project.name,
        "ModelVersion": str(model_version.version),
        "EvaluationDetails": {
            "EvaluationEndTimestamp": model_version.ended_at.isoformat() if model_version.ended_at else None,
            "Evaluation": model_version.evaluation,
            "NumberOfTestingImages": performance.get("evaluated_images"),
            "Threshold": model_version.threshold,
        },
        "AggregatedEvaluationResults": {
            "Metrics": {
                "F1Score": performance.get("f1"),
                "Precision": performance.get("precision"),
                "Recall": performance.get("recall"),
                "ROCAUC": performance.get("roc_auc"),
                "AveragePrecision": performance.get("average_precision"),
            },
            "ConfusionMatrix": performance.get("confusion_matrix"),
        },
    }
