"""CreateModel's OutputConfig: the evaluation results of a trained version written to S3 by the
scheduler's task (lookout.tasks.write_evaluation_outputs)."""

from __future__ import annotations

import json
import logging

from django.utils import timezone

from lookout.models import ModelOptions
from lookout.selectors import evaluation_manifest_lines, evaluation_result
from training.models import USABLE_STATUSES

logger = logging.getLogger(__name__)


def evaluation_outputs_write() -> int:
    """Write the evaluation results of every newly trained model whose CreateModel named an
    OutputConfig (run every 30 s by the scheduler); returns how many were written.

    Each version is claimed with a conditional update, so two schedulers never write it twice.
    A version whose training failed has nothing to write and is left alone.
    """
    written = 0
    pending = ModelOptions.objects.filter(
        evaluation=ModelOptions.Evaluation.PENDING, model_version__status__in=USABLE_STATUSES
    ).values_list("pk", flat=True)
    for pk in list(pending):
        if not ModelOptions.objects.filter(pk=pk, evaluation=ModelOptions.Evaluation.PENDING).update(
            evaluation=ModelOptions.Evaluation.WRITING
        ):
            continue
        options = ModelOptions.objects.select_related("model_version__project").get(pk=pk)
        try:
            manifest_key, result_key = _write_evaluation(options)
        except Exception as exc:  # S3 unreachable, no credentials, no such bucket: said on the model
            logger.warning("evaluation results of model version %s not written: %s", options.model_version_id, exc)
            ModelOptions.objects.filter(pk=pk).update(
                evaluation=ModelOptions.Evaluation.FAILED,
                evaluation_message=f"The evaluation results could not be written to s3://{options.output_bucket}/"
                f"{options.output_prefix} ({type(exc).__name__}: {exc}).",
            )
            continue
        ModelOptions.objects.filter(pk=pk).update(
            evaluation=ModelOptions.Evaluation.WRITTEN,
            evaluation_manifest_key=manifest_key,
            evaluation_result_key=result_key,
            evaluation_written_at=timezone.now(),
        )
        written += 1
    return written


def _write_evaluation(options: ModelOptions) -> tuple[str, str]:
    import boto3

    mv = options.model_version
    prefix = options.output_prefix
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    base = f"{prefix}{mv.project.name}/model-{mv.version}"
    manifest_key, result_key = f"{base}/evaluation-manifest.jsonl", f"{base}/evaluation-result.json"
    s3 = boto3.client("s3")
    lines = evaluation_manifest_lines(model_version=mv)
    s3.put_object(Bucket=options.output_bucket, Key=manifest_key, Body=("\n".join(lines) + "\n").encode())
    result = json.dumps(evaluation_result(model_version=mv), indent=2).encode()
    s3.put_object(Bucket=options.output_bucket, Key=result_key, Body=result)
    return manifest_key, result_key
