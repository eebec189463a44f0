import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")

django_application = get_wsgi_application()

from console.edge import EdgeApp  # noqa: E402  (it reads the apps' models: after Django is set up)

application = EdgeApp(django_application)
