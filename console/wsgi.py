import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")

from console.edge import EdgeApp  # noqa: E402  (after the settings module is chosen)

application = EdgeApp(get_wsgi_application())
