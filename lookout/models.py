"""What the Lookout for Vision API needs beyond Kenpin's own rows: AWS-style access keys, the
dataset jobs that import manifests, where imported images came from, model tags and options,
packaging jobs, and the answers kept for ClientToken idempotency."""

from django.conf import settings
from django.db import models

from projects.models import ApiToken, Image, Project, Split
from training.models import ModelVersion


class AccessKey(models.Model):
    """The AWS-style access key of an API token, for SigV4-signed requests.

    SigV4 is an HMAC under the secret itself, so the server must be able to read the secret:
    it is stored encrypted (lookout/keys.py), never in clear. The access key id is public.
    """

    token = models.OneToOneField(ApiToken, on_delete=models.CASCADE, related_name="access_key")
    access_key_id = models.CharField(max_length=20, unique=True)
    secret_ciphertext = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return self.access_key_id


class IdempotentRequest(models.Model):
    """A call made with a ClientToken, and its answer, replayed when the same call comes again."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    operation = models.CharField(max_length=40)
    client_token = models.CharField(max_length=64)
    request_hash = models.CharField(max_length=64)  # SHA-256 of the call's other parameters
    status = models.PositiveSmallIntegerField(null=True)  # null while the first call runs
    response = models.JSONField(null=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "operation", "client_token"], name="one_call_per_client_token")
        ]


class DatasetStatus(models.TextChoices):
    """Lookout for Vision's dataset states."""

    CREATE_IN_PROGRESS = "CREATE_IN_PROGRESS"
    CREATE_COMPLETE = "CREATE_COMPLETE"
    CREATE_FAILED = "CREATE_FAILED"
    UPDATE_IN_PROGRESS = "UPDATE_IN_PROGRESS"
    UPDATE_COMPLETE = "UPDATE_COMPLETE"
    UPDATE_FAILED_ROLLBACK_IN_PROGRESS = "UPDATE_FAILED_ROLLBACK_IN_PROGRESS"
    UPDATE_FAILED_ROLLBACK_COMPLETE = "UPDATE_FAILED_ROLLBACK_COMPLETE"
    DELETE_IN_PROGRESS = "DELETE_IN_PROGRESS"
    DELETE_COMPLETE = "DELETE_COMPLETE"
    DELETE_FAILED = "DELETE_FAILED"


IN_PROGRESS = (DatasetStatus.CREATE_IN_PROGRESS, DatasetStatus.UPDATE_IN_PROGRESS)


class DatasetJob(models.Model):
    """Manifest lines imported into a project's dataset in the background, with progress.

    Made by CreateDataset (a Ground Truth manifest on S3), UpdateDatasetEntries (lines sent in
    the call) and the console's import (a manifest with a zip of its images). The lines to
    import are stored as a file first, so that the worker reads them through default_storage.
    """

    class Kind(models.TextChoices):
        CREATE = "create"
        UPDATE = "update"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="dataset_jobs")
    split = models.CharField(max_length=5, choices=Split.choices)
    kind = models.CharField(max_length=6, choices=Kind.choices)
    status = models.CharField(max_length=40, choices=DatasetStatus.choices)
    status_message = models.TextField(blank=True)
    source = models.CharField(max_length=1100, blank=True)  # s3://bucket/key of the manifest, for people
    manifest = models.FileField(max_length=255, blank=True)  # the lines, in default_storage
    images_zip = models.FileField(max_length=255, blank=True)  # the console's zip of images, if any
    total_lines = models.PositiveIntegerField(default=0)
    done_lines = models.PositiveIntegerField(default=0)
    added = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    problems = models.JSONField(default=list, blank=True)  # [{"line": n, "source_ref": str, "message": str}]
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    @property
    def is_final(self) -> bool:
        return self.status not in IN_PROGRESS

    @property
    def progress(self) -> int:
        return int(100 * self.done_lines / self.total_lines) if self.total_lines else (100 if self.is_final else 0)


class ImageSource(models.Model):
    """Where an imported image came from: its manifest line's `source-ref` (and mask's), so that
    ListDatasetEntries gives it back and UpdateDatasetEntries finds the image by it."""

    image = models.OneToOneField(Image, on_delete=models.CASCADE, related_name="lookout_source")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    source_ref = models.CharField(max_length=1024)
    mask_ref = models.CharField(max_length=1024, blank=True)
    label_attribute = models.CharField(max_length=128, default="anomaly-label")

    class Meta:
        indexes = [models.Index(fields=["project", "source_ref"])]


class ModelOptions(models.Model):
    """What CreateModel and StartModel were given that Kenpin's model versions do not hold, and
    the evaluation results written to the model's OutputConfig."""

    class Evaluation(models.TextChoices):
        NONE = "", "Not asked"
        PENDING = "pending", "Waiting for the training to end"
        WRITING = "writing", "Writing"
        WRITTEN = "written", "Written"
        FAILED = "failed", "Failed"

    model_version = models.OneToOneField(ModelVersion, on_delete=models.CASCADE, related_name="lookout_options")
    output_bucket = models.CharField(max_length=63, blank=True)
    output_prefix = models.CharField(max_length=1024, blank=True)
    kms_key_id = models.CharField(max_length=2048, blank=True)
    min_inference_units = models.PositiveIntegerField(null=True)
    max_inference_units = models.PositiveIntegerField(null=True)
    evaluation = models.CharField(max_length=8, choices=Evaluation.choices, blank=True)
    evaluation_message = models.TextField(blank=True)
    evaluation_manifest_key = models.CharField(max_length=1100, blank=True)
    evaluation_result_key = models.CharField(max_length=1100, blank=True)
    evaluation_written_at = models.DateTimeField(null=True, blank=True)


class ModelTag(models.Model):
    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="lookout_tags")
    key = models.CharField(max_length=128)
    value = models.CharField(max_length=256, blank=True)

    class Meta:
        ordering = ["key"]
        constraints = [models.UniqueConstraint(fields=["model_version", "key"], name="one_value_per_tag_key")]


class PackagingStatus(models.TextChoices):
    CREATED = "CREATED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


class PackagingJob(models.Model):
    """StartModelPackagingJob: a self-contained zip of a model version that scores images with no
    Kenpin server (lookout/packaging.py)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="packaging_jobs")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="packaging_jobs")
    name = models.CharField(max_length=64)
    description = models.CharField(max_length=256, blank=True)
    configuration = models.JSONField(default=dict, blank=True)  # ModelPackagingConfiguration as given
    status = models.CharField(max_length=10, choices=PackagingStatus.choices, default=PackagingStatus.CREATED)
    status_message = models.TextField(blank=True)
    package = models.FileField(max_length=255, blank=True)  # the zip, in default_storage
    output_key = models.CharField(max_length=1100, blank=True)  # where it was copied on S3, if asked
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="one_packaging_job_name_per_project")]

    @property
    def is_final(self) -> bool:
        return self.status in (PackagingStatus.SUCCEEDED, PackagingStatus.FAILED)
