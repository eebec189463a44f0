"""`manage.py create_token USERNAME [--name NAME]`: print a new API token for USERNAME.

Prints only the token, so that scripts can capture it: `TOKEN=$(python manage.py create_token ada)`.
"""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from projects.tokens import api_token_create


class Command(BaseCommand):
    help = "Create an API token for a user and print it (only the token; it is not stored in clear)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="What the token is for, shown on the API tokens page.")

    def handle(self, *args, username, name, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"There is no user named “{username}”.")
        if not user.is_active:
            raise CommandError(f"The user “{username}” is inactive; their tokens would be refused.")
        _, token = api_token_create(user=user, name=name or "Created with manage.py create_token")
        self.stdout.write(token)
