"""The Celery app. Queues: `training` (long, CPU-heavy), `inference` (hosted models, trial
detection) and `default` (housekeeping). Settings come from Django's, prefixed CELERY_."""

import logging
import os

from celery import Celery, signals

from console.checks import shared_setup_problems

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")

app = Celery("kenpin")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.worker_ready.connect
@signals.beat_init.connect
def _warn_about_shared_setup(**kwargs):
    """Loudly, in the worker's or beat's log: settings that break a multi-machine install."""
    for problem in shared_setup_problems():
        logging.getLogger("kenpin").warning("Warning: %s", problem)
