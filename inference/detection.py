"""Detection as the web process serves it: one image, one HOSTED model version, answered by an
inference worker (inference.worker.detect_in_worker) within KENPIN_DETECT_TIMEOUT."""

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from django.conf import settings

from core.errors import Conflict, Invalid, KenpinError, TooLarge, Unavailable
from core.redis_errors import REDIS_UNREACHABLE
from core.uploads import check_upload_size
from inference import handoff
from inference.operations import detection_record
from training.models import ModelVersion, Status

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Detection:
    is_anomalous: bool
    confidence: float  # 0.5..1, confidence in the verdict `is_anomalous`
    score: float  # calibrated anomaly score, 0..1; the threshold decides
    anomalous_fraction: float  # 0..1 of the image's pixels
    mask_png: str  # base64 PNG of the image's size, each class in its colour on white
    inference_ms: float  # the worker's own time: decoding, predicting, encoding the mask
    # Base64 JPEG of an anomalous photo for the Operations page, made by the worker from the
    # photo it decoded; empty for a normal one.
    thumbnail_jpeg: str = ""
    # Where the time went, {stage: ms}: the worker's stages, then the web process's (handoff:
    # the round trip to the worker less the worker's own time; record: inference.operations).
    stages: dict = field(default_factory=dict)
    # Segmentation models: every class the model knows, [{"name", "color", "area"}], area the
    # class's share of the image's pixels (0..1). Empty for classification models.
    classes: list[dict] = field(default_factory=list)
    # Kenpin's addition: the photo is unlike the training photos, so the verdict may not apply
    # (engine.familiarity). None when the model cannot tell (trained before Kenpin measured it).
    unlike: bool | None = None
    unlike_message: str = ""


def model_version_detect(*, model_version: ModelVersion, data: bytes) -> Detection:
    """Detect anomalies in one encoded image with a HOSTED version, in an inference worker.

    The image travels on a Redis list; inference.handoff says how, and how a call outlives the
    death of the worker that took it.

    Raises Conflict (409) when the version is not hosted, Invalid (400) for bytes that are not
    a usable image, TooLarge (413), Unavailable (503) when no inference worker answers within
    KENPIN_DETECT_TIMEOUT seconds or Redis cannot be reached.
    """
    _check_hosted(model_version)
    return _record(model_version, data, *_hand_off(model_version, data))


# Photos one batch request may carry: a product shot from every side, by a few cameras.
BATCH_MAX_PHOTOS = 16


def model_version_detect_batch(*, model_version: ModelVersion, images: list[bytes]) -> list[Detection | KenpinError]:
    """Detect anomalies in several photos at once, each in an inference worker; the answers in
    the photos' order.

    All the photos are handed off together, so that the inference workers' threads (one per
    core, on any machine) work on them side by side. A photo that cannot be used (not an
    image, empty, too large) answers its own error in its place and the others are answered;
    a version that is not hosted (Conflict) and no worker answering in time or Redis
    unreachable (Unavailable) fail the whole request, as for one photo.
    """
    _check_hosted(model_version)
    check_batch_size(len(images))
    # One thread per photo waits for its answer: each call keeps its own hand-off, including the
    # resend when the worker holding it dies.
    with ThreadPoolExecutor(max_workers=len(images), thread_name_prefix="kenpin-detect-batch") as pool:
        futures = [pool.submit(_hand_off, model_version, data) for data in images]
    results: list[Detection | KenpinError] = []
    for data, future in zip(images, futures):
        try:
            found, round_trip_ms = future.result()
        except (Invalid, TooLarge) as exc:
            results.append(exc)
            continue
        results.append(_record(model_version, data, found, round_trip_ms))
    return results


def check_batch_size(count: int) -> None:
    """Invalid (400) for a batch without photos or with more than BATCH_MAX_PHOTOS."""
    if not count:
        raise Invalid("The request has no photos: send each as a multipart part named `files`.", code="empty")
    if count > BATCH_MAX_PHOTOS:
        raise Invalid(
            f"The request has {count} photos; at most {BATCH_MAX_PHOTOS} go in one request. Send the rest in another.",
            code="too_many_files",
        )


def _check_hosted(model_version: ModelVersion) -> None:
    if model_version.status != Status.HOSTED:
        raise Conflict(_not_hosted_advice(model_version), code="not_hosted")


def _hand_off(model_version: ModelVersion, data: bytes) -> tuple[Detection, float]:
    """One photo through an inference worker: its Detection and the round trip's milliseconds.

    Touches no database, so that a batch's photos are handed off from several threads.
    """
    check_upload_size(data)
    if not data:
        raise Invalid("The request body is empty: send the image's bytes as the body.", code="empty")
    started = time.perf_counter()
    timeout = settings.KENPIN_DETECT_TIMEOUT
    work = {
        "model_version": model_version.pk,
        "weights": model_version.weights_file.name,
        "threshold": model_version.threshold,
    }
    try:
        answer = handoff.call(data=data, work=work, timeout=timeout)
    except REDIS_UNREACHABLE as exc:
        logger.warning("detect call failed to reach Redis: %s", exc)
        raise Unavailable(
            "Kenpin cannot reach its Redis right now, so no inference worker can take the call. Try again in a "
            "few seconds; if it keeps failing, check that Redis is running."
        ) from None
    if answer is None:
        raise Unavailable(
            f"No inference worker answered within {timeout} s. Check that an inference worker is "
            "running and not overloaded, then try again."
        )
    if "error" in answer:
        error = Conflict if answer["error"] == "not_hosted" else Invalid
        raise error(answer["message"], code=answer["error"])
    found = Detection(**answer)
    round_trip_ms = (time.perf_counter() - started) * 1000
    found.stages["handoff"] = round(max(0.0, round_trip_ms - found.inference_ms), 2)
    return found, round_trip_ms


def _record(model_version: ModelVersion, data: bytes, found: Detection, round_trip_ms: float) -> Detection:
    started = time.perf_counter()
    detection_record(model_version=model_version, detection=found, latency_ms=round_trip_ms, data=data)
    found.stages["record"] = round((time.perf_counter() - started) * 1000, 2)
    return found


def _not_hosted_advice(model_version: ModelVersion) -> str:
    version = model_version.version
    if model_version.is_usable:
        return (
            f"Model version {version} is {model_version.status}, not HOSTED. Start it "
            f"(POST …/models/{version}/start) and wait until its status is HOSTED."
        )
    return (
        f"Model version {version} is {model_version.status}: it has no trained model to host. Detect with a "
        "trained version, or train a new one."
    )
