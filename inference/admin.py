from django.contrib import admin

from inference.models import TrialDetection
from projects.admin import NoAddAdmin


@admin.register(TrialDetection)
class TrialDetectionAdmin(NoAddAdmin):
    list_display = ("name", "project", "model_version", "status", "created_at")
    list_filter = ("status",)
