"""`manage.py create_token USERNAME [--name NAME] [--aws]`: print a new API token for USERNAME.

Prints only the token, so that scripts can capture it: `TOKEN=$(python manage.py create_token ada)`.
With --aws, a second line gives the token's AWS-style access key id and secret access key,
separated by one space, for the AWS SDKs and CLI (docs/migrating-from-lookout-for-vision.md):
`read KEY SECRET < <(python manage.py create_token ada --aws | tail -1)`.
"""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from lookout.services import access_key_create
from projects.tokens import api_token_create


class Command(BaseCommand):
    help = "Create an API token for a user and print it (only the token; it is not stored in clear)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="What the token is for, shown on the API tokens page.")
        parser.add_argument(
            "--aws",
            action="store_true",
            help="Also print the token's AWS access key id and secret access key, on one last line.",
        )

    def handle(self, *args, username, name, aws, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"There is no user named “{username}”.")
        if not user.is_active:
            raise CommandError(f"The user “{username}” is inactive; their tokens would be refused.")
        with transaction.atomic():
            row, token = api_token_create(user=user, name=name or "Created with manage.py create_token")
            # A secret nobody saw would be useless: the access key is made only when it is printed.
            key, secret = access_key_create(token=row) if aws else (None, "")
        self.stdout.write(token)
        if key is not None:
            self.stdout.write(f"{key.access_key_id} {secret}")
