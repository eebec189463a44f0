from django.contrib import admin

from inference.models import TrialDetection


@admin.register(TrialDetection)
class TrialDetectionAdmin(admin.ModelAdmin):
    list_display = ("name", "project", "model_version", "status", "created_at")
    list_filter = ("status",)
