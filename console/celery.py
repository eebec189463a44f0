"""The Celery app. Queues: `training` (long, CPU-heavy), `inference` (hosted models, trial
detection) and `default` (housekeeping). Settings come from Django's, prefixed CELERY_."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")

app = Celery("kenpin")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
