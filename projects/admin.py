from django.contrib import admin

from projects.models import AnomalyClass, ApiToken, Image, Membership, Project, ZipImport


class NoAddAdmin(admin.ModelAdmin):
    """Rows made only through Kenpin's services: an "Add" form here would skip their checks
    (a project without its owner and datasets, an image never decoded, a token not hashed)."""

    def has_add_permission(self, request, obj=None):
        return False


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0


@admin.register(Project)
class ProjectAdmin(NoAddAdmin):
    list_display = ("name", "created_at", "created_by")
    search_fields = ("name",)
    inlines = [MembershipInline]


@admin.register(Image)
class ImageAdmin(NoAddAdmin):
    list_display = ("id", "project", "original_name", "label", "dataset", "width", "height", "uploaded_at")
    list_filter = ("label",)
    search_fields = ("original_name", "sha256", "project__name")
    readonly_fields = ("file", "thumbnail", "mask", "mask_kind", "sha256", "width", "height", "format", "size_bytes")


@admin.register(AnomalyClass)
class AnomalyClassAdmin(NoAddAdmin):
    """Read-only: classes change through the console or the API, which keep the masks in step."""

    list_display = ("name", "project", "index", "color", "created_at")
    search_fields = ("name", "project__name")

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ApiToken)
class ApiTokenAdmin(NoAddAdmin):
    list_display = ("name", "user", "prefix", "created_at", "last_used_at", "revoked_at")
    readonly_fields = ("prefix", "digest")


@admin.register(ZipImport)
class ZipImportAdmin(NoAddAdmin):
    """Read-only reports: an import is started from the console or the API and run by a worker."""

    list_display = ("id", "project", "original_name", "split", "status", "done", "total", "created_by", "created_at")
    list_filter = ("status",)
    search_fields = ("original_name", "project__name")

    def has_change_permission(self, request, obj=None):
        return False
