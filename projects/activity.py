"""The activity log: every service that changes a project records who did it here.

Lowest of the apps that have projects, so that training and inference services write to it
too. A record is written in the caller's transaction: an action that rolls back leaves no entry.
"""

import csv
import io
import json
from collections.abc import Iterable, Iterator
from datetime import UTC, timedelta

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from projects.models import Action, Activity, Project

# Entries of the same person, kind and fold key this close together become one entry.
FOLD_WINDOW = timedelta(minutes=10)
MAX_NAMES = 50  # names of things an entry keeps in its detail (the count keeps counting)


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def activity_record(
    *,
    project: Project,
    user,
    action: str,
    summary: str = "",
    detail: dict | None = None,
    count: int = 1,
    noun: str = "",
    prefix: str = "",
    suffix: str = "",
    names: list[str] = (),
    fold_key: str | None = None,
) -> Activity:
    """Record that `user` (None: Kenpin itself) did `action` in `project`.

    A summary completes the sentence that starts with the person ("ada" + "started hosting
    version 2"). Counted actions give `prefix`, `noun` and `suffix` instead ("labeled " + "12
    images" + " normal"); with a `fold_key`, they add to the same person's latest entry of that
    kind and key from the last FOLD_WINDOW, which then reads "labeled 42 images normal". `names` are the
    things concerned (image names, for example), kept in the detail for the CSV export.
    """
    if action not in Action.values:
        raise ValueError(f"unknown activity {action!r}")
    user = user if user is not None and getattr(user, "is_authenticated", False) else None
    detail = dict(detail or {})
    now = timezone.now()
    with transaction.atomic():
        entry = None
        if fold_key is not None:
            entry = (
                Activity.objects.select_for_update()
                .filter(project=project, user=user, action=action, fold_key=fold_key, at__gte=now - FOLD_WINDOW)
                .order_by("-at", "-id")
                .first()
            )
        if entry is not None:
            entry.count += count
            entry.at = now
            kept = entry.detail.get("names", [])
            entry.detail = {**entry.detail, **detail, "names": (kept + list(names))[:MAX_NAMES]}
            entry.summary = (prefix + plural(entry.count, noun) + suffix)[:500]
            entry.save(update_fields=["count", "at", "detail", "summary"])
            return entry
        if names:
            detail["names"] = list(names)[:MAX_NAMES]
        return Activity.objects.create(
            project=project,
            user=user,
            username=user.get_username() if user else "",
            at=now,
            action=action,
            count=count,
            summary=(prefix + plural(count, noun) + suffix if noun else summary)[:500],
            detail=detail,
            fold_key=fold_key or "",
        )


def activity_list(*, project: Project) -> QuerySet[Activity]:
    return Activity.objects.filter(project=project).order_by("-at", "-id")


CSV_COLUMNS = ["time_utc", "person", "action", "description", "count", "detail"]


def csv_cell(value) -> str:
    """A value for a CSV cell that spreadsheets will not run: text starting with = + - @ (a
    file name can) is prefixed with a quote, as OWASP advises against formula injection."""
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def csv_lines(rows: Iterable[Iterable]) -> Iterator[str]:
    """CSV text, one line at a time, for a streaming response."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for row in rows:
        writer.writerow(row)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()


def activity_csv_rows(*, project: Project) -> Iterator[list]:
    """The project's whole log, newest first, as CSV rows (header first): UTC ISO times, the
    person, the action's code, what it was about, how many things, and the detail as JSON."""
    yield CSV_COLUMNS
    for entry in activity_list(project=project).iterator(chunk_size=2000):
        yield [
            entry.at.astimezone(UTC).isoformat(timespec="seconds"),
            csv_cell(entry.username or "Kenpin"),
            entry.action,
            csv_cell(entry.summary),
            entry.count,
            csv_cell(json.dumps(entry.detail, ensure_ascii=False, sort_keys=True)),
        ]
