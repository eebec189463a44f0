import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")

django_application = get_wsgi_application()

# Django imports the URL configuration, and with it every API module and its schemas, on the
# first request: each gunicorn worker's first calls after a start or a reload waited ~200 ms
# for it on a 2-core machine. Imported here, it loads before the worker accepts a connection.
import console.urls  # noqa: E402, F401
from console.edge import EdgeApp  # noqa: E402  (it reads the apps' models: after Django is set up)

application = EdgeApp(django_application)
