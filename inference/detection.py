"""Detection as the web process serves it: one image, one HOSTED model version, answered by an
inference worker (inference.worker.detect_in_worker) within KENPIN_DETECT_TIMEOUT."""

from dataclasses import dataclass

from celery.exceptions import TaskRevokedError
from celery.exceptions import TimeoutError as CeleryTimeout
from django.conf import settings

from core.errors import Conflict, Invalid, Unavailable
from core.uploads import check_upload_size
from inference import handoff
from inference.tasks import detect_anomalies
from training.models import ModelVersion, Status


@dataclass(frozen=True)
class Detection:
    is_anomalous: bool
    confidence: float  # 0.5..1, confidence in the verdict `is_anomalous`
    score: float  # calibrated anomaly score, 0..1; the threshold decides
    anomalous_fraction: float  # 0..1 of the image's pixels
    mask_png: str  # base64 PNG of the image's size, coloured as inference.lfv.MASK_COLORS
    inference_ms: float  # the worker's own time: decoding, predicting, encoding the mask


def model_version_detect(*, model_version: ModelVersion, data: bytes) -> Detection:
    """Detect anomalies in one encoded image with a HOSTED version, in an inference worker.

    The image's bytes wait in Redis under a random key that expires with the call; the task
    message (JSON) carries only that key. Measured against the bytes base64-encoded inside the
    message, this saves most of the transport's cost: kombu encodes a message body again and
    copies it into its unacked set, so a 450 KB photo cost ~20 ms more per call
    (docs/benchmarks.md).

    Raises Conflict (409) when the version is not hosted, Invalid (400) for bytes that are not
    a usable image, TooLarge (413), Unavailable (503) when no inference worker answers within
    KENPIN_DETECT_TIMEOUT seconds.
    """
    if model_version.status != Status.HOSTED:
        raise Conflict(
            f"Model version {model_version.version} is {model_version.status}, not HOSTED. Start it "
            f"(POST …/models/{model_version.version}/start) and wait until its status is HOSTED.",
            code="not_hosted",
        )
    check_upload_size(data)
    if not data:
        raise Invalid("The request body is empty: send the image's bytes as the body.", code="empty")
    timeout = settings.KENPIN_DETECT_TIMEOUT
    image_key = handoff.image_put(data=data, timeout=timeout)
    # `expires`: a call whose client has given up is dropped by the worker, not run late.
    result = detect_anomalies.apply_async(
        args=[model_version.pk, model_version.weights_file.name, model_version.threshold, image_key], expires=timeout
    )
    try:
        answer = result.get(timeout=timeout)
    except (CeleryTimeout, TaskRevokedError):  # revoked: a worker received it after `expires`
        answer = {"error": "unavailable", "message": ""}
    finally:
        result.forget()  # the answer was read (or abandoned): free its key in Redis now
        handoff.image_discard(key=image_key)  # already gone if a worker took it
    if "error" in answer:
        if answer["error"] == "unavailable":
            raise Unavailable(
                f"No inference worker answered within {timeout} s. Check that an inference worker is "
                "running and not overloaded, then try again."
            )
        error = Conflict if answer["error"] == "not_hosted" else Invalid
        raise error(answer["message"], code=answer["error"])
    return Detection(**answer)
