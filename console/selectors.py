from django.db.models import OuterRef, QuerySet, Subquery

from projects.models import Project
from projects.selectors import project_list_for_user
from training.models import ModelVersion


def dashboard_projects(*, user) -> QuerySet[Project]:
    """The user's projects with image counts and their latest model version's number and state."""
    latest = ModelVersion.objects.filter(project=OuterRef("pk")).order_by("-version")
    return project_list_for_user(user=user).annotate(
        latest_version=Subquery(latest.values("version")[:1]),
        latest_status=Subquery(latest.values("status")[:1]),
    )
