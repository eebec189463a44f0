from django.contrib import messages
from django.contrib.auth import get_user_model, login
from django.contrib.auth.decorators import login_not_required
from django.db import transaction
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from console.errors import KenpinError
from console.forms import ApiTokenForm, FirstAdminForm
from console.selectors import dashboard_projects
from projects.selectors import api_token_list
from projects.services import api_token_create
from projects.services import api_token_revoke as revoke_token


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


@require_http_methods(["GET", "POST"])
def api_tokens(request):
    """The signed-in person's API tokens: create one (shown once, here) and revoke them."""
    form = ApiTokenForm(request.POST or None)
    created = None
    if request.method == "POST" and form.is_valid():
        created = api_token_create(user=request.user, name=form.cleaned_data["name"])
        form = ApiTokenForm()
    response = render(
        request,
        "console/api_tokens.html",
        {
            "form": form,
            "tokens": api_token_list(user=request.user),
            "created": created and {"row": created[0], "token": created[1]},
        },
    )
    # The page may hold a token that exists nowhere else: keep it out of every cache.
    response["Cache-Control"] = "no-store"
    return response


@require_POST
def api_token_revoke(request, token_id):
    try:
        revoke_token(user=request.user, token_id=token_id)
    except KenpinError:
        raise Http404 from None  # someone else's token, or already revoked: nothing to tell
    messages.success(request, "Token revoked: calls made with it are refused from now on.")
    return redirect("api_tokens")
