from django.contrib.auth import get_user_model
from django.shortcuts import redirect
from django.urls import reverse


class FirstAdminMiddleware:
    """Until an account exists, every console page leads to the page that creates the first admin.

    Only anonymous requests ask the database (a signed-in person proves an account exists),
    so the check costs nothing on the pages people use.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not request.user.is_authenticated:
            setup_url = reverse("setup")
            exempt = request.path.startswith(("/static/", "/api/", "/2020-11-20/")) or request.path == setup_url
            if not exempt and not get_user_model().objects.exists():
                return redirect(setup_url)
        return self.get_response(request)
