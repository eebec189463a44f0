from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models.functions import Lower

PROJECT_NAME_PATTERN = r"[a-zA-Z0-9][a-zA-Z0-9_-]*"

project_name_validator = RegexValidator(
    rf"^{PROJECT_NAME_PATTERN}\Z",
    "A project name uses letters, digits, '-' and '_', and starts with a letter or digit.",
)


def project_files_prefix(project_id: int) -> str:
    """The folder of default_storage holding every stored file of a project: images, thumbnails,
    masks, model artifacts, heatmaps and trials. Deleting a project removes this folder."""
    return f"projects/{project_id}/"


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


class MaskKind(models.TextChoices):
    """How an image's stored mask file is to be read.

    Masks stored before anomaly classes existed are the uploaded bytes themselves, any format,
    where every non-zero pixel is defect: they keep that meaning (class index 1, the implicit
    class) without any file being rewritten. Every mask stored since is a class-index PNG.
    """

    BINARY = "binary", "Binary (any non-zero pixel is defect)"
    CLASS_INDEX = "class_index", "Class indices (0 background, k the class with index k)"


class Image(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="images")
    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="images")
    file = models.FileField(max_length=255)
    thumbnail = models.FileField(max_length=255)
    mask = models.FileField(max_length=255, blank=True)
    mask_kind = models.CharField(max_length=12, choices=MaskKind.choices, default=MaskKind.BINARY)
    # The class indices (1..K) the mask's pixels hold, written with each mask, so that the classes
    # page counts masks per class without reading every mask file. None: no mask, or a mask stored
    # before this was kept (read once, then filled in: projects.selectors.mask_class_indices).
    mask_classes_used = models.JSONField(null=True, blank=True)
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


class ImportStatus(models.TextChoices):
    QUEUED = "QUEUED", "Queued"
    IMPORTING = "IMPORTING", "Importing"
    COMPLETE = "COMPLETE", "Complete"
    FAILED = "FAILED", "Failed"


IMPORT_FINAL = (ImportStatus.COMPLETE, ImportStatus.FAILED)


class ZipImport(models.Model):
    """A zip of images imported into a dataset in the background (projects.tasks.import_zip).

    The request checks the zip's directory and stores the zip; a worker reads it through
    default_storage, adds its images one by one and writes its progress here. The stored zip is
    deleted once the import is final; the row stays as its report.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="zip_imports")
    split = models.CharField(max_length=5, choices=Split.choices)
    status = models.CharField(max_length=10, choices=ImportStatus.choices, default=ImportStatus.QUEUED)
    status_message = models.TextField(blank=True)
    file = models.FileField(max_length=255, blank=True)  # the zip, in default_storage, until the import ends
    original_name = models.CharField(max_length=255, blank=True)  # the uploaded zip's name, for people
    total = models.PositiveIntegerField(default=0)  # files the zip holds to import as images (masks apart)
    done = models.PositiveIntegerField(default=0)  # of them, added or refused so far
    added_normal = models.PositiveIntegerField(default=0)
    added_anomaly = models.PositiveIntegerField(default=0)
    added_unlabeled = models.PositiveIntegerField(default=0)
    rejected = models.JSONField(default=list, blank=True)  # [{"name": entry in the zip, "message": why}]
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"zip import {self.pk} ({self.original_name})"

    @property
    def is_final(self) -> bool:
        return self.status in IMPORT_FINAL

    @property
    def added(self) -> int:
        return self.added_normal + self.added_anomaly + self.added_unlabeled

    @property
    def progress(self) -> int:
        """Percent of the zip's images handled."""
        if self.status == ImportStatus.COMPLETE:
            return 100
        return int(100 * self.done / self.total) if self.total else 0


# Masks hold a class's index in their pixels (8 bits, 0 being background).
MAX_CLASS_INDEX = 255
# The one class of a project that has none of its own: every mask of such a project is this class.
IMPLICIT_CLASS_INDEX = 1
IMPLICIT_CLASS_NAME = "anomaly"
IMPLICIT_CLASS_COLOR = "#ff0000"


class AnomalyClass(models.Model):
    """A named kind of defect of a project ("crack", "missing chip"): Lookout for Vision's anomaly
    label, with the colour its masks are drawn in.

    Stored masks hold `index` in their pixels, never the name or the colour: renaming or
    recolouring a class rewrites no file, and deleting one rewrites only the masks that use it
    (its pixels become background). An index is free again once its class is deleted and no
    mask holds it any more. The first class a project creates takes index 1, the implicit class
    of a project without classes, so the masks painted before keep their meaning.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="anomaly_classes")
    index = models.PositiveSmallIntegerField()  # 1..MAX_CLASS_INDEX: the pixel value in stored masks
    name = models.CharField(max_length=64)
    color = models.CharField(max_length=7)  # "#rrggbb", lower case; never white or black (background)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "index"]
        constraints = [
            models.UniqueConstraint(fields=["project", "index"], name="one_class_per_index"),
            models.UniqueConstraint("project", Lower("name"), name="class_names_unique_per_project"),
            models.UniqueConstraint(fields=["project", "color"], name="one_class_per_colour"),
            models.CheckConstraint(
                condition=models.Q(index__gte=1, index__lte=MAX_CLASS_INDEX), name="class_index_in_a_byte"
            ),
        ]

    def __str__(self):
        return self.name


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


class InvitationGrant(models.Model):
    """A membership an invitation gives: the invited person joins `project` with `role` on accepting."""

    link = models.ForeignKey("accounts.AccountLink", on_delete=models.CASCADE, related_name="grants")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    role = models.CharField(max_length=10, choices=Role.choices)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["link", "project"], name="one_grant_per_project")]


class Action(models.TextChoices):
    """What an activity-log entry records; the label is the verb the log shows."""

    PROJECT_CREATED = "project_created", "created the project"
    PROJECT_UPDATED = "project_updated", "changed the description"
    MEMBER_ADDED = "member_added", "added a member"
    MEMBER_ROLE_CHANGED = "member_role_changed", "changed a member's role"
    MEMBER_REMOVED = "member_removed", "removed a member"
    MEMBER_JOINED = "member_joined", "joined by invitation"
    IMAGES_UPLOADED = "images_uploaded", "uploaded images"
    IMAGES_IMPORTED = "images_imported", "imported a zip"
    IMAGES_LABELED = "images_labeled", "labeled images"
    IMAGES_MOVED = "images_moved", "moved images"
    IMAGES_DELETED = "images_deleted", "deleted images"
    MASK_SET = "mask_set", "set a defect mask"
    TEST_DATASET_CREATED = "test_dataset_created", "kept a test dataset aside"
    TEST_DATASET_REMOVED = "test_dataset_removed", "removed the test dataset"
    TRAINING_STARTED = "training_started", "started a training"
    TRAINING_CANCELLED = "training_cancelled", "cancelled a training"
    THRESHOLD_CHANGED = "threshold_changed", "changed a threshold"
    VERSION_DELETED = "version_deleted", "deleted a model version"
    HOSTING_STARTED = "hosting_started", "started hosting"
    HOSTING_STOPPED = "hosting_stopped", "stopped hosting"
    TRIAL_STARTED = "trial_started", "ran a trial detection"
    TRIAL_VERIFIED = "trial_verified", "verified predictions"
    TRIAL_ADDED = "trial_added", "added verified photos to the dataset"
    TRIAL_DELETED = "trial_deleted", "deleted a trial detection"
    SETTINGS_CHANGED = "settings_changed", "changed a setting"


class Activity(models.Model):
    """One entry of a project's activity log: who did what, and when.

    Written by the services that do each action (projects.activity.activity_record), never by
    views or signals. Repeated small actions (one request per uploaded photo, one click per
    label) are folded into the person's previous entry of the same kind for a few minutes, so
    that the log reads "uploaded 30 images", not thirty lines.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="activity")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    username = models.CharField(max_length=150, blank=True)  # kept if the account is ever deleted
    at = models.DateTimeField()
    action = models.CharField(max_length=30, choices=Action.choices)
    count = models.PositiveIntegerField(default=1)  # how many things, after folding
    # What the entry is about, in words: "version 3", "12 images to the test dataset"...
    summary = models.CharField(max_length=500)
    detail = models.JSONField(default=dict, blank=True)  # the same in data, for the CSV export
    fold_key = models.CharField(max_length=100, blank=True)  # entries with the same key may fold together

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["project", "-at"])]

    def __str__(self):
        return f"{self.username or 'someone'} {self.get_action_display()}: {self.summary}"
