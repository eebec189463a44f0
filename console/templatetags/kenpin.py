from django import template
from django.utils import timezone

from training.models import Status

register = template.Library()


@register.filter
def percent(value) -> str:
    """A 0..1 fraction as a percentage people read at a glance: 93%, 4.5%, 0.3%."""
    if value is None or value == "":
        return "—"
    value = float(value) * 100
    if value == 0 or value >= 10:
        return f"{value:.0f}%"
    return f"{value:.1f}%"


@register.filter
def elapsed(since) -> str:
    """How long ago `since` (a datetime) was, in the units a progress line wants: 12 s, 3 min."""
    if not since:
        return ""
    seconds = max(0, int((timezone.now() - since).total_seconds()))
    if seconds < 120:
        return f"{seconds} s"
    return f"{seconds // 60} min"


@register.filter
def model_status(value) -> str:
    """A model version's status value (TRAINING_FAILED) in the words the pages use (Training failed)."""
    try:
        return Status(value).label
    except ValueError:
        return value


@register.filter
def interval(value) -> str:
    """A 95 % interval [low, high] as "0.887–1.000"; empty when there is none (undefined)."""
    if not value:
        return ""
    low, high = value
    return f"{low:.3f}–{high:.3f}"
