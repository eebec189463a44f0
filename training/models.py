from django.conf import settings
from django.db import models

from projects.models import Image, Label, Project, Split


class Status(models.TextChoices):
    """Lookout for Vision's model states, plus QUEUED: created, waiting for a training worker."""

    QUEUED = "QUEUED", "Queued"
    TRAINING = "TRAINING", "Training"
    TRAINED = "TRAINED", "Trained"
    TRAINING_FAILED = "TRAINING_FAILED", "Training failed"
    STARTING_HOSTING = "STARTING_HOSTING", "Starting hosting"
    HOSTED = "HOSTED", "Hosted"
    HOSTING_FAILED = "HOSTING_FAILED", "Hosting failed"
    STOPPING_HOSTING = "STOPPING_HOSTING", "Stopping hosting"
    DELETING = "DELETING", "Deleting"


# States in which a version has a usable trained model.
USABLE_STATUSES = (
    Status.TRAINED,
    Status.STARTING_HOSTING,
    Status.HOSTED,
    Status.HOSTING_FAILED,
    Status.STOPPING_HOSTING,
)


# Hosting's rules, in one place: inference.hosting applies them and the hosting card shows the
# button that matches. Starting a failed hosting tries again; stopping a starting one cancels it.
HOSTING_STARTABLE = (Status.TRAINED, Status.HOSTING_FAILED)
HOSTING_STOPPABLE = (Status.HOSTED, Status.STARTING_HOSTING)
# A worker holds the model, or is loading or unloading it: stop hosting before deleting it.
HOSTING_STATUSES = (Status.STARTING_HOSTING, Status.HOSTED, Status.STOPPING_HOSTING)


class Evaluation(models.TextChoices):
    TEST_DATASET = "test_dataset", "Test dataset"
    CROSS_VALIDATION = "cross_validation", "Cross-validation on the training dataset"


class ModelKind(models.TextChoices):
    """Lookout for Vision's two kinds of model: is it defective, or also where and which defect."""

    CLASSIFICATION = "classification", "Classification"
    SEGMENTATION = "segmentation", "Segmentation"


class ModelVersion(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="model_versions")
    version = models.PositiveIntegerField()
    description = models.TextField(blank=True, max_length=1000)
    backbone = models.CharField(max_length=32)
    options = models.JSONField(default=dict, blank=True)  # what the engine was asked to do

    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    status_message = models.TextField(blank=True)
    stage = models.CharField(max_length=20, blank=True)  # features / fitting / evaluating
    progress = models.PositiveSmallIntegerField(default=0)  # 0-100
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    evaluation = models.CharField(max_length=20, choices=Evaluation.choices, blank=True)
    metrics = models.JSONField(default=dict, blank=True)  # engine metrics at the trained threshold
    trained_threshold = models.FloatField(null=True, blank=True)  # as chosen by training
    threshold = models.FloatField(null=True, blank=True)  # in use; people may move it
    # Set when training ends: segmentation when the engine learned from masks. `classes` are the
    # anomaly classes the model knows, [{"name", "color"}] in the engine's order (class id k is
    # classes[k - 1]), with the colours they had in the project when training started.
    kind = models.CharField(max_length=14, choices=ModelKind.choices, blank=True)
    classes = models.JSONField(default=list, blank=True)
    # Artifact files, in default_storage: the engine's safetensors weights, JSON description and
    # the ONNX backbone graph it was trained with (empty for versions trained before models
    # carried it), so that a serving machine needs no torch.
    weights_file = models.FileField(max_length=255, blank=True)
    config_file = models.FileField(max_length=255, blank=True)
    backbone_file = models.FileField(max_length=255, blank=True)

    class Meta:
        ordering = ["project", "-version"]
        constraints = [models.UniqueConstraint(fields=["project", "version"], name="one_number_per_version")]

    def __str__(self):
        return f"{self.project.name} v{self.version}"

    @property
    def artifact_files(self) -> dict:
        """{engine file name: FieldFile} of the stored model files, the ones it has."""
        files = {
            "model.safetensors": self.weights_file,
            "model.json": self.config_file,
            "backbone.onnx": self.backbone_file,
        }
        return {name: field for name, field in files.items() if field}

    @property
    def is_usable(self) -> bool:
        return self.status in USABLE_STATUSES

    @property
    def is_final(self) -> bool:
        """Whether the training is over (successfully or not): nothing will change by itself."""
        return self.status not in (Status.QUEUED, Status.TRAINING)

    @property
    def is_changing_hosting(self) -> bool:
        """Hosting is starting or stopping: an inference worker will change the state."""
        return self.status in (Status.STARTING_HOSTING, Status.STOPPING_HOSTING)

    @property
    def can_start_hosting(self) -> bool:
        return self.status in HOSTING_STARTABLE

    @property
    def can_stop_hosting(self) -> bool:
        return self.status in HOSTING_STOPPABLE

    @property
    def training_seconds(self) -> float | None:
        if self.started_at and self.ended_at:
            return (self.ended_at - self.started_at).total_seconds()
        return None


class ModelVersionImage(models.Model):
    """One image as a model version saw it, frozen at the start of training.

    Later label edits, moves and deletions of the project's images never change these rows, so
    a version's record stays true. The evaluation fields are filled for evaluated images (the
    test dataset, or every training image under cross-validation).
    """

    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="images")
    image = models.ForeignKey(Image, null=True, on_delete=models.SET_NULL, related_name="+")
    sha256 = models.CharField(max_length=64)
    original_name = models.CharField(max_length=255, blank=True)
    split = models.CharField(max_length=5, choices=Split.choices)
    label = models.CharField(max_length=10, choices=Label.choices)
    has_mask = models.BooleanField(default=False)

    score = models.FloatField(null=True, blank=True)  # calibrated, 0..1
    heatmap = models.FileField(max_length=255, blank=True)  # RGBA PNG overlay
    # Segmentation versions: the predicted classes, each in its colour on transparent (preview size).
    predicted_mask = models.FileField(max_length=255, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["model_version", "sha256"], name="one_snapshot_row_per_image")]
