from django.contrib.auth import get_user_model, login
from django.contrib.auth.decorators import login_not_required
from django.db import transaction
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET

from console.forms import FirstAdminForm
from console.selectors import dashboard_projects


@login_not_required
def setup(request):
    """Create the first account, an admin, on a console that has none. Gone once one exists."""
    User = get_user_model()
    if User.objects.exists():
        raise Http404
    form = FirstAdminForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            # Two people submitting at once: the second finds an account and gets the 404 above
            # on their next request; here the lock makes sure only one admin is created.
            if User.objects.select_for_update().exists():
                raise Http404
            user = form.save(commit=False)
            user.is_staff = user.is_superuser = True
            user.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("dashboard")
    return render(request, "console/setup.html", {"form": form})


@require_GET
def dashboard(request):
    return render(request, "console/dashboard.html", {"projects": dashboard_projects(user=request.user)})
