"""What goes wrong when several machines share one Kenpin, said before it goes wrong.

`serve`, the workers and the web server print these at start (loudly, in their logs), and
`manage.py check` lists them.
"""

import os

from django.conf import settings
from django.core import checks


def shared_setup_problems() -> list[str]:
    """Settings that break an installation whose machines share a database, one line each."""
    problems = []
    shared_database = settings.DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3"
    if shared_database and not os.environ.get("DJANGO_SECRET_KEY"):
        problems.append(
            "DATABASE_URL names a database server, but DJANGO_SECRET_KEY is not set: this machine signs sessions "
            f"with a key generated in {settings.DATA_DIR}, which other machines do not have, so if they share this "
            "database, signing in through one web server fails on the others. Set the same DJANGO_SECRET_KEY on every "
            "machine (README, “Scaling out”)."
        )
    if shared_database and not settings.S3_BUCKET:
        problems.append(
            "DATABASE_URL names a database server, but S3_BUCKET is not set: images and models are kept on this "
            "machine's disk, where workers on other machines sharing this database cannot read them. Set S3_BUCKET on every machine, "
            "or run all of Kenpin on this one."
        )
    return problems


@checks.register(checks.Tags.security)
def shared_setup_check(app_configs, **kwargs):
    return [checks.Warning(problem, id="kenpin.W001") for problem in shared_setup_problems()]
