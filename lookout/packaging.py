"""Model packaging, the worker's side (lookout.tasks.run_packaging_job): a self-contained zip of a trained model version that
scores images on any machine with Python, numpy, Pillow, onnxruntime and safetensors, and
nothing of Kenpin's server (no Django, no torch).

The zip holds the model's files, the backbone's ONNX graph it was trained with, the threshold in
use, the engine's inference modules (plain Python, copied as they are) and a small command-line
runner (lookout/runner/kenpin_detect.py), so that it scores exactly as the hosted model does.
"""

from __future__ import annotations

import io
import json
import logging
import uuid
import zipfile
from importlib import metadata
from pathlib import Path

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import close_old_connections
from django.utils import timezone

from lookout.models import PackagingJob, PackagingStatus
from training.models import ModelVersion

logger = logging.getLogger(__name__)

RUNNER = Path(__file__).resolve().parent / "runner" / "kenpin_detect.py"
ENGINE = Path(__file__).resolve().parent.parent / "engine"
# The engine is plain Python and imports lazily; only engine/export.py needs torch and timm (to
# export a backbone, which a packaged model never does), so it stays out.
ENGINE_LEFT_OUT = ("export.py",)
RUNTIME_PACKAGES = ("numpy", "pillow", "onnxruntime", "safetensors")


def build_package(model_version: ModelVersion) -> bytes:
    """The zip of a trained version (see the module's docstring)."""
    from engine.backbones import BACKBONES
    from engine.features import GRAPH_VERSION, ensure_graph

    backbone = BACKBONES[model_version.backbone]
    folder = f"kenpin-{model_version.project.name}-v{model_version.version}"
    package = {
        "project": model_version.project.name,
        "model_version": model_version.version,
        "backbone": backbone.name,
        "threshold": model_version.threshold,
        "trained_threshold": model_version.trained_threshold,
        "packaged_at": timezone.now().isoformat(),
        "mask_colors": {"background": "#FFFFFF", "anomaly": "#FF0000"},
        # A segmentation model answers with its classes in the colours the version recorded, as
        # the hosted model does (inference.worker); a classification model with "anomaly" alone.
        "classes": model_version.classes if model_version.kind == "segmentation" else [],
    }
    requirements = "".join(f"{name}=={metadata.version(name)}\n" for name in RUNTIME_PACKAGES)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        files = model_version.artifact_files
        for name, field in files.items():
            with field.open("rb") as f:
                archive.writestr(f"{folder}/model/{name}", f.read())
        if "backbone.onnx" not in files:
            # A model saved before models carried their graph runs the engine's export of its
            # backbone, found in the cache folder under this name (the runner points it there).
            archive.write(ensure_graph(backbone), f"{folder}/model/{backbone.name}-v{GRAPH_VERSION}.onnx")
        for module in sorted(ENGINE.glob("*.py")):
            if module.name not in ENGINE_LEFT_OUT:
                archive.write(module, f"{folder}/engine/{module.name}")
        archive.write(RUNNER, f"{folder}/kenpin_detect.py")
        archive.writestr(f"{folder}/package.json", json.dumps(package, indent=2) + "\n")
        archive.writestr(f"{folder}/requirements.txt", requirements)
        archive.writestr(f"{folder}/README.txt", _readme(package, folder))
    return out.getvalue()


def _readme(package: dict, folder: str) -> str:
    return (
        f"Kenpin model {package['project']} version {package['model_version']}, packaged {package['packaged_at']}.\n\n"
        "Score images on any machine with Python 3.10 or later, without a Kenpin server:\n\n"
        f"    cd {folder}\n"
        "    python -m venv .venv && .venv/bin/pip install -r requirements.txt\n"
        "    .venv/bin/python kenpin_detect.py photo.jpg [more.jpg ...] [--threshold T] [--masks DIR]\n\n"
        "Each image gets one JSON line: IsAnomalous, Confidence and Anomalies as Lookout for Vision's\n"
        "DetectAnomalies answered, and Score (0..1; anomalous when Score >= the threshold,\n"
        f"{package['threshold']:.4f} as packaged). The scores equal the hosted model's.\n"
    )


def packaging_job_run(*, job_id: int) -> None:
    """Build a claimed job's package and store it; every outcome is written to the job's row."""
    claimed = PackagingJob.objects.filter(pk=job_id, status=PackagingStatus.CREATED).update(
        status=PackagingStatus.RUNNING, status_message="Building the package."
    )
    if not claimed:
        return
    job = PackagingJob.objects.select_related("model_version__project").get(pk=job_id)
    stored = ""
    try:
        data = build_package(job.model_version)
        stored = default_storage.save(
            f"projects/{job.project_id}/packages/{job.name}-{uuid.uuid4().hex[:8]}.zip", ContentFile(data)
        )
        message = f"The package is ready ({len(data) / 1e6:.1f} MB): download it from the model's page in Kenpin."
        output_key = ""
        greengrass = job.configuration.get("Greengrass") or {}
        location = greengrass.get("S3OutputLocation") or {}
        if location.get("Bucket"):
            output_key, copy_message = _copy_to_s3(data, location, greengrass.get("ComponentName") or job.name)
            message += " " + copy_message
        PackagingJob.objects.filter(pk=job.pk).update(
            status=PackagingStatus.SUCCEEDED, status_message=message, package=stored, output_key=output_key
        )
    except Exception as exc:
        if stored:
            default_storage.delete(stored)
        logger.exception("packaging job %s failed", job_id)
        PackagingJob.objects.filter(pk=job.pk).update(
            status=PackagingStatus.FAILED,
            status_message=f"The package could not be built ({type(exc).__name__}: {exc}). Start the job again; "
            "if it fails again, report it with the worker's log.",
        )
    finally:
        close_old_connections()


def _copy_to_s3(data: bytes, location: dict, component: str) -> tuple[str, str]:
    """Put the package at the job's S3OutputLocation too, with the server's AWS credentials."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    prefix = location.get("Prefix") or ""
    key = f"{prefix.rstrip('/') + '/' if prefix else ''}{component}.zip"
    try:
        boto3.client("s3").put_object(Bucket=location["Bucket"], Key=key, Body=data)
    except (BotoCoreError, ClientError) as exc:
        return "", f"It could not be copied to s3://{location['Bucket']}/{key} ({exc})."
    return key, f"A copy is at s3://{location['Bucket']}/{key}."
