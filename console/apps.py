from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    name = "console"
    verbose_name = "Kenpin console"

    def ready(self):
        from console import checks  # noqa: F401  registers the shared-setup check
