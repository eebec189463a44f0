from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

PROJECT_NAME_PATTERN = r"[a-zA-Z0-9][a-zA-Z0-9_-]*"

project_name_validator = RegexValidator(
    rf"^{PROJECT_NAME_PATTERN}\Z",
    "A project name uses letters, digits, '-' and '_', and starts with a letter or digit.",
)


class Project(models.Model):
    name = models.CharField(max_length=255, unique=True, validators=[project_name_validator])
    description = models.TextField(blank=True, max_length=1000)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, through="Membership", related_name="projects")

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    # `role` is annotated by the selectors that fetch a project for a user (project_get_for_user).
    @property
    def can_write(self) -> bool:
        return getattr(self, "role", None) in (Role.OWNER, Role.EDITOR)

    @property
    def is_owner(self) -> bool:
        return getattr(self, "role", None) == Role.OWNER


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    EDITOR = "editor", "Editor"
    VIEWER = "viewer", "Viewer"


class Membership(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "user"], name="one_membership_per_user")]

    @property
    def can_write(self) -> bool:
        return self.role in (Role.OWNER, Role.EDITOR)

    @property
    def is_owner(self) -> bool:
        return self.role == Role.OWNER


class Split(models.TextChoices):
    TRAIN = "train", "Training dataset"
    TEST = "test", "Test dataset"


class Dataset(models.Model):
    """A project's training dataset (always there) or test dataset (optional, as in LFV)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="datasets")
    split = models.CharField(max_length=5, choices=Split.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "split"], name="one_dataset_per_split")]

    def __str__(self):
        return f"{self.project.name}/{self.split}"


class Label(models.TextChoices):
    UNLABELED = "unlabeled", "Unlabeled"
    NORMAL = "normal", "Normal"
    ANOMALY = "anomaly", "Anomaly"


class Image(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="images")
    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="images")
    file = models.FileField(max_length=255)
    thumbnail = models.FileField(max_length=255)
    mask = models.FileField(max_length=255, blank=True)
    original_name = models.CharField(max_length=255, blank=True)  # shown to people, never used as a path
    sha256 = models.CharField(max_length=64)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    format = models.CharField(max_length=16)
    size_bytes = models.PositiveBigIntegerField()
    label = models.CharField(max_length=10, choices=Label.choices, default=Label.UNLABELED)
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    uploaded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-uploaded_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["project", "sha256"], name="one_copy_per_project")]
        indexes = [models.Index(fields=["dataset", "label"])]

    def __str__(self):
        return self.original_name or f"image {self.pk}"


class ApiToken(models.Model):
    """A personal API token. Only its SHA-256 is stored: the token is shown once, at creation.

    Tokens are 256 random bits, so a fast hash is enough (no salt or slow KDF needed: there is
    nothing to brute-force). `prefix` lets people tell their tokens apart in the console.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12)
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"
