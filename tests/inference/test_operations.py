"""The operations view: what a hosted model has been seeing, from the records of its detect calls."""

import base64
import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.core.files.storage import default_storage

from inference.detection import Detection
from inference.lfv import lfv_mask_png
from inference.models import DetectionRecord
from inference.operations import KEEP_PHOTOS, TRIM_PHOTOS_AT, detection_record, detection_records_prune
from inference.selectors import model_version_operations
from tests.factories import PASSWORD, UserFactory, add_image, image_bytes, make_project, make_trained_version

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 12, 3, 14, 30, tzinfo=UTC)


@pytest.fixture
def mv(project):
    images = [add_image(project, label="normal"), add_image(project, label="anomaly")]
    return make_trained_version(project, scores={images[0]: 0.1, images[1]: 0.9})


def _detection(anomalous: bool, *, unlike=False) -> Detection:
    import numpy as np

    mask = np.zeros((48, 64), bool)
    mask[10:20, 10:30] = anomalous
    return Detection(
        is_anomalous=anomalous,
        confidence=0.9,
        score=0.8 if anomalous else 0.2,
        anomalous_fraction=float(mask.mean()),
        mask_png=base64.b64encode(lfv_mask_png(mask)).decode(),
        inference_ms=30.0,
        unlike=unlike,
        unlike_message="Unlike the training photos: proportions 3:1." if unlike else "",
    )


def _record(mv, *, at, anomalous=False, latency=50.0, unlike=False):
    return DetectionRecord.objects.create(
        model_version=mv,
        at=at,
        is_anomalous=anomalous,
        score=0.8 if anomalous else 0.2,
        anomalous_fraction=0.05 if anomalous else 0.0,
        latency_ms=latency,
        inference_ms=latency / 2,
        unlike=unlike,
    )


def test_each_call_is_recorded_and_only_the_latest_anomalous_photos_are_kept(mv):
    records = DetectionRecord.objects.filter(model_version=mv)
    for i in range(TRIM_PHOTOS_AT + 3 * KEEP_PHOTOS):
        detection_record(model_version=mv, detection=_detection(True), latency_ms=40 + i, data=image_bytes())
        kept = records.exclude(photo="")
        # The latest KEEP_PHOTOS always keep their photo; older ones are forgotten in batches.
        assert min(i + 1, KEEP_PHOTOS) <= kept.count() <= TRIM_PHOTOS_AT
        latest = records.order_by("-at", "-id")[:KEEP_PHOTOS]
        assert all(r.photo and r.mask for r in latest)
    detection_record(model_version=mv, detection=_detection(False, unlike=True), latency_ms=41, data=image_bytes())
    assert records.count() == TRIM_PHOTOS_AT + 3 * KEEP_PHOTOS + 1
    oldest = records.order_by("at", "id").first()
    assert not oldest.photo and not oldest.mask and oldest.latency_ms == 40  # its numbers stay
    assert records.filter(is_anomalous=False, unlike=True, photo="").count() == 1
    # The kept photos' files are there.
    kept = records.exclude(photo="")
    assert all(default_storage.exists(r.photo.name) and default_storage.exists(r.mask.name) for r in kept)


def test_older_photos_are_forgotten_in_one_batch_once_more_than_the_trim_keep_theirs(mv):
    records = DetectionRecord.objects.filter(model_version=mv)
    for i in range(TRIM_PHOTOS_AT):
        detection_record(model_version=mv, detection=_detection(True), latency_ms=40 + i, data=image_bytes())
    assert records.exclude(photo="").count() == TRIM_PHOTOS_AT  # none forgotten yet
    detection_record(model_version=mv, detection=_detection(True), latency_ms=99, data=image_bytes())
    kept = records.exclude(photo="")
    assert kept.count() == KEEP_PHOTOS and min(r.latency_ms for r in kept) == 40 + TRIM_PHOTOS_AT + 1 - KEEP_PHOTOS


def test_a_call_is_answered_even_when_its_record_cannot_be_written(mv, monkeypatch):
    from inference import operations

    def broken(**kwargs):
        raise operations.DatabaseError("disk full")

    monkeypatch.setattr(operations.DetectionRecord.objects, "create", broken)
    detection_record(model_version=mv, detection=_detection(True), latency_ms=40, data=image_bytes())
    assert not DetectionRecord.objects.exists()
    _, files = default_storage.listdir(f"projects/{mv.project_id}/detections/{mv.pk}")
    assert files == []  # the photo stored for it was removed again


def test_records_older_than_the_days_kept_are_pruned_with_their_files(mv, settings, django_capture_on_commit_callbacks):
    settings.KENPIN_DETECTION_DAYS = 30
    detection_record(model_version=mv, detection=_detection(True), latency_ms=40, data=image_bytes())
    old = DetectionRecord.objects.get()
    DetectionRecord.objects.filter(pk=old.pk).update(at=NOW - timedelta(days=31))
    _record(mv, at=NOW - timedelta(days=29))
    with django_capture_on_commit_callbacks(execute=True):
        assert detection_records_prune(now=NOW) == 1
    assert DetectionRecord.objects.count() == 1
    assert not default_storage.exists(old.photo.name) and not default_storage.exists(old.mask.name)


def test_the_operations_count_calls_share_latency_and_unlike_photos_by_hour(mv):
    hour = NOW.replace(minute=0)
    for i in range(10):
        _record(mv, at=hour + timedelta(minutes=i), anomalous=i < 3, latency=10.0 * (i + 1), unlike=i == 9)
    _record(mv, at=hour - timedelta(hours=5), anomalous=True, latency=200)
    _record(mv, at=hour - timedelta(hours=60), latency=5)  # before the 48 hours shown
    ops = model_version_operations(model_version=mv, period="hour", now=NOW)
    assert len(ops.buckets) == 48 and ops.buckets[-1].start == hour
    last = ops.buckets[-1]
    assert (last.calls, last.anomalous, last.unlike, last.latency_ms) == (10, 3, 1, 55.0)
    assert ops.buckets[-6].calls == 1 and ops.buckets[-6].anomalous_share == 1.0
    assert sum(b.calls for b in ops.buckets[:-6]) == 0
    assert (ops.calls, ops.anomalous, ops.unlike) == (11, 4, 1)
    assert ops.latency_p50_ms == 60.0 and ops.latency_p95_ms == 200.0
    by_day = model_version_operations(model_version=mv, period="day", now=NOW)
    assert len(by_day.buckets) == 30 and by_day.calls == 12


def test_the_page_shows_the_numbers_charts_photos_and_exports_csv(signed_in, project, mv):
    for anomalous in (True, False, False, True):
        detection_record(model_version=mv, detection=_detection(anomalous), latency_ms=42, data=image_bytes())
    page = signed_in.get(f"/projects/cookies/models/{mv.version}/operations").content.decode()
    assert re.search(r'id="ops-calls">4<', page) and re.search(r'id="ops-share">50%<', page)
    assert re.search(r'id="ops-p50">42 ms<', page)
    data = json.loads(re.search(r'<script id="operations-data" type="application/json">(.*?)</script>', page).group(1))
    assert data["period"] == "hour" and len(data["calls"]) == 48 and data["calls"][-1] == 4 and data["share"][-1] == 0.5
    photos = re.findall(r'src="(/projects/cookies/models/1/operations/\d+/photo)"', page)
    masks = re.findall(r'src="(/projects/cookies/models/1/operations/\d+/mask)"', page)
    assert len(photos) == len(masks) == 2
    assert signed_in.get(photos[0])["Content-Type"] == "image/jpeg"
    assert signed_in.get(masks[0])["Content-Type"] == "image/png"
    response = signed_in.get(f"/projects/cookies/models/{mv.version}/operations.csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:3] == ["time_utc", "version", "is_anomalous"] and len(rows) == 5
    assert [row[2] for row in rows[1:]] == ["1", "0", "0", "1"]
    assert "operations" in signed_in.get(f"/projects/cookies/models/{mv.version}/").content.decode()


def test_a_version_without_calls_says_how_to_get_some(signed_in, mv):
    page = signed_in.get(f"/projects/cookies/models/{mv.version}/operations?period=day").content.decode()
    assert 'id="no-calls"' in page and "Start hosting" in page and "operations-data" not in page


def test_only_members_see_a_models_operations(client, user, mv):
    record = _record(mv, at=NOW)
    stranger = UserFactory()
    client.login(username=stranger.username, password=PASSWORD)
    for path in ("operations", "operations.csv", f"operations/{record.pk}/photo"):
        assert client.get(f"/projects/cookies/models/{mv.version}/{path}").status_code == 404
    viewer = UserFactory()
    make_project(owner=user, name="boards", viewer=viewer)  # a viewer of another project is a stranger here
    client.login(username=viewer.username, password=PASSWORD)
    assert client.get(f"/projects/cookies/models/{mv.version}/operations").status_code == 404
