from django.conf import settings
from django.db import models
from django.db.models import Q

from projects.models import Image, Label, Project
from training.models import ModelVersion


class TrialStatus(models.TextChoices):
    QUEUED = "QUEUED", "Queued"
    RUNNING = "RUNNING", "Running"
    COMPLETED = "COMPLETED", "Completed"
    FAILED = "FAILED", "Failed"


class TrialDetection(models.Model):
    """A trial run of a model version on new images, whose predictions people then verify."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="trial_detections")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="trial_detections")
    name = models.CharField(max_length=255)
    threshold = models.FloatField()  # the version's threshold when the trial ran
    status = models.CharField(max_length=10, choices=TrialStatus.choices, default=TrialStatus.QUEUED)
    status_message = models.TextField(blank=True)
    progress = models.PositiveSmallIntegerField(default=0)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return self.name

    @property
    def is_final(self) -> bool:
        return self.status in (TrialStatus.COMPLETED, TrialStatus.FAILED)


class Verdict(models.TextChoices):
    UNVERIFIED = "unverified", "Not yet verified"
    CORRECT = "correct", "Correct"
    INCORRECT = "incorrect", "Incorrect"


class TrialImage(models.Model):
    """One image of a trial: uploaded for the trial (`file`) or one of the project's (`image`)."""

    trial = models.ForeignKey(TrialDetection, on_delete=models.CASCADE, related_name="images")
    image = models.ForeignKey(Image, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    file = models.FileField(max_length=255, blank=True)
    thumbnail = models.FileField(max_length=255, blank=True)
    original_name = models.CharField(max_length=255, blank=True)
    sha256 = models.CharField(max_length=64)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()

    is_anomalous = models.BooleanField(null=True)  # null until predicted
    confidence = models.FloatField(null=True, blank=True)
    score = models.FloatField(null=True, blank=True)
    anomalous_fraction = models.FloatField(null=True, blank=True)
    heatmap = models.FileField(max_length=255, blank=True)
    # Segmentation versions: the image's mask, each class in the version's colour on white at the
    # image's size; predicted, or painted over by a person (mask_painted). Added with the image.
    predicted_mask = models.FileField(max_length=255, blank=True)
    mask_painted = models.BooleanField(default=False)
    error = models.TextField(blank=True)  # why this image could not be predicted
    # Unlike the photos the model was trained on (engine.familiarity): the verdict may not apply.
    # Null when the model cannot tell (trained before Kenpin measured it).
    unlike = models.BooleanField(null=True)
    unlike_message = models.TextField(blank=True)  # what differs, in words

    verdict = models.CharField(max_length=10, choices=Verdict.choices, default=Verdict.UNVERIFIED)
    added_to_dataset = models.BooleanField(default=False)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["trial", "sha256"], name="one_copy_per_trial")]

    @property
    def verified_label(self) -> str | None:
        """The label people confirmed: the prediction if correct, its opposite if incorrect."""
        if self.verdict == Verdict.UNVERIFIED or self.is_anomalous is None:
            return None
        predicted_anomaly = self.is_anomalous
        actual_anomaly = predicted_anomaly if self.verdict == Verdict.CORRECT else not predicted_anomaly
        return Label.ANOMALY if actual_anomaly else Label.NORMAL


class DetectionRecord(models.Model):
    """One detect call a hosted model version answered: what the line sees (the operations view).

    Written by the web process once the answer is back (inference.operations); kept for
    KENPIN_DETECTION_DAYS, then pruned by the scheduler. Only the latest anomalous calls of a
    version keep their photo (a small JPEG) and mask, so that storage stays bounded.
    """

    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="detections")
    at = models.DateTimeField()
    is_anomalous = models.BooleanField()
    score = models.FloatField()  # calibrated, 0..1
    anomalous_fraction = models.FloatField()  # 0..1 of the photo's pixels
    latency_ms = models.FloatField()  # the whole call, as the web process waited for it
    inference_ms = models.FloatField()  # the inference worker's share
    unlike = models.BooleanField(null=True)  # unlike the training photos; null: the model cannot tell
    photo = models.FileField(max_length=255, blank=True)  # JPEG preview, latest anomalous calls only
    mask = models.FileField(max_length=255, blank=True)  # Lookout for Vision's mask PNG, with the photo

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [
            models.Index(fields=["model_version", "at"], name="detection_version_time"),
            # The few records that keep a photo (at most TRIM_PHOTOS_AT + 1 per version): every
            # anomalous detect call asks whether there are too many, and without this index that
            # question read all of the version's records, slower with every call (1.1 ms at
            # 8,830 records on SQLite; 0.007 ms with it).
            models.Index(fields=["model_version", "at"], condition=~Q(photo=""), name="detection_with_photo"),
        ]
