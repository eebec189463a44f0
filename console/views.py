import functools

from django.contrib import messages
from django.contrib.auth import get_user_model, login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.models import LinkKind
from accounts.selectors import account_get, account_link_get_usable, account_link_list_pending, account_list
from accounts.services import (
    account_create,
    account_link_revoke,
    account_set_active,
    account_set_admin,
    password_reset_complete,
    password_reset_create,
)
from console import security
from console.forms import (
    AccountCreateForm,
    ApiTokenForm,
    FirstAdminForm,
    InvitationForm,
    NewPasswordForm,
    WelcomeForm,
)
from console.middleware import API_PREFIXES, bad_request_message
from console.selectors import dashboard_projects
from core.errors import KenpinError
from inference import hosting
from inference.selectors import trial_list
from lookout.services import access_key_create
from projects.activity import activity_list
from projects.forms import ProjectDeleteForm
from projects.invitations import invitation_accept as accept_invitation
from projects.invitations import invitation_create
from projects.selectors import (
    api_token_list,
    invitation_grants,
    memberships_by_user,
    project_get_for_user,
    project_list_all,
)
from projects.tokens import api_token_create
from projects.tokens import api_token_revoke as revoke_token
from projects.views import dataset_context, settings_page
from training.selectors import model_version_list


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
    """The signed-in person's API tokens: create one (shown once, here) and revoke them.

    Each new token comes with its AWS-style access key (id and secret, also shown once) for
    the AWS SDKs and CLI, which sign requests instead of sending a bearer token.
    """
    form = ApiTokenForm(request.POST or None)
    created = None
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            row, token = api_token_create(user=request.user, name=form.cleaned_data["name"])
            key, secret = access_key_create(token=row)
        created = {"row": row, "token": token, "access_key_id": key.access_key_id, "secret": secret}
        form = ApiTokenForm()
    response = render(
        request,
        "console/api_tokens.html",
        {
            "form": form,
            "tokens": api_token_list(user=request.user).select_related("access_key"),
            "created": created,
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


# --- People (Kenpin admins) -------------------------------------------------------------------


def admin_required(view):
    """Kenpin admins only (is_staff); others get 403, with the reason."""

    @functools.wraps(view)
    def wrapped(request, *args, **kwargs):
        if not request.user.is_staff:
            raise PermissionDenied("Only Kenpin admins manage people. Ask one of them.")
        return view(request, *args, **kwargs)

    return wrapped


def _people_page(request, *, create_form=None, invite_form=None, new_link=None, status=200):
    people = list(account_list())
    links = list(account_link_list_pending())
    memberships = memberships_by_user(user_ids=[person.pk for person in people])
    grants = invitation_grants(link_ids=[link.pk for link in links])
    for person in people:
        person.project_memberships = memberships.get(person.pk, [])
    for link in links:
        link.project_grants = grants.get(link.pk, [])
    projects = list(project_list_all())
    response = render(
        request,
        "console/people.html",
        {
            "people": people,
            "links": links,
            "create_form": create_form or AccountCreateForm(),
            "invite_form": invite_form or InvitationForm(projects=projects),
            "new_link": new_link,
        },
        status=status,
    )
    # The page may show a link that exists nowhere else: keep it out of every cache.
    response["Cache-Control"] = "no-store"
    return response


@admin_required
@require_GET
def people(request):
    return _people_page(request)


@admin_required
@require_POST
def person_create(request):
    form = AccountCreateForm(request.POST)
    if form.is_valid():
        try:
            person = account_create(
                username=form.cleaned_data["username"],
                password=form.cleaned_data["password1"],
                email=form.cleaned_data["email"],
                is_admin=form.cleaned_data["is_admin"],
            )
        except KenpinError as exc:
            form.add_error("password1" if exc.code == "weak_password" else "username", exc.message)
        else:
            messages.success(
                request,
                f"Account “{person.username}” created. Give them their password, and add them to projects "
                "(project owners can too, on each project's settings page).",
            )
            return redirect("people")
    return _people_page(request, create_form=form, status=400)


@admin_required
@require_POST
def person_invite(request):
    form = InvitationForm(request.POST, projects=project_list_all())
    if form.is_valid():
        link, token = invitation_create(
            created_by=request.user,
            email=form.cleaned_data["email"],
            make_admin=form.cleaned_data["make_admin"],
            days=form.cleaned_data["days"],
            grants=form.grants(),
        )
        url = request.build_absolute_uri(reverse("welcome", kwargs={"token": token}))
        return _people_page(request, new_link={"link": link, "url": url, "what": "invitation"})
    return _people_page(request, invite_form=form, status=400)


@admin_required
@require_POST
def person_reset(request, user_id):
    person = account_get(user_id=user_id)
    try:
        link, token = password_reset_create(user=person, created_by=request.user)
    except KenpinError as exc:
        messages.error(request, exc.message)
        return redirect("people")
    url = request.build_absolute_uri(reverse("password_reset", kwargs={"token": token}))
    return _people_page(request, new_link={"link": link, "url": url, "what": "reset", "person": person})


@admin_required
@require_POST
def person_set(request, user_id):
    """Deactivate or reactivate an account (`active`), or give or take admin rights (`admin`)."""
    person = account_get(user_id=user_id)
    try:
        if "active" in request.POST:
            active = request.POST["active"] == "1"
            account_set_active(user=person, active=active, by=request.user)
            messages.success(
                request,
                f"{person.username} can sign in again."
                if active
                else f"{person.username} is deactivated: they can no longer sign in or use their API tokens.",
            )
        elif "admin" in request.POST:
            admin = request.POST["admin"] == "1"
            account_set_admin(user=person, is_admin=admin, by=request.user)
            messages.success(request, f"{person.username} is {'now' if admin else 'no longer'} a Kenpin admin.")
    except KenpinError as exc:
        messages.error(request, exc.message)
    return redirect("people")


@admin_required
@require_POST
def link_revoke(request, link_id):
    try:
        account_link_revoke(link_id=link_id)
    except KenpinError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Link revoked: it no longer works.")
    return redirect("people")


# --- Links people open: invitations and password resets ------------------------------------------


def _link_page(request, template, *, link, form, status=200):
    response = render(request, template, {"link": link, "form": form}, status=status)
    # The token is in this page's URL: no cache keeps it. (Referrers already stay on this site:
    # Django's SECURE_REFERRER_POLICY is same-origin; no-referrer would make Chromium send
    # `Origin: null` with the form, which the CSRF check refuses.)
    response["Cache-Control"] = "no-store"
    return response


@login_not_required
@require_http_methods(["GET", "POST"])
def welcome(request, token):
    """An invitation: the invited person chooses a username and password, and is signed in."""
    link = account_link_get_usable(token=token, kind=LinkKind.INVITATION)
    form = WelcomeForm(request.POST or None, initial={"email": link.email if link else ""})
    if link is None or request.user.is_authenticated:
        return _link_page(request, "console/welcome.html", link=link, form=None, status=404 if link is None else 200)
    if request.method == "POST" and form.is_valid():
        try:
            person = accept_invitation(
                token=token,
                username=form.cleaned_data["username"],
                password=form.cleaned_data["password1"],
                email=form.cleaned_data["email"],
            )
        except KenpinError as exc:
            form.add_error("password1" if exc.code == "weak_password" else "username", exc.message)
        else:
            login(request, person, backend="django.contrib.auth.backends.ModelBackend")
            messages.success(request, f"Welcome to Kenpin, {person.username}.")
            return redirect("dashboard")
    return _link_page(request, "console/welcome.html", link=link, form=form, status=400 if form.errors else 200)


@login_not_required
@require_http_methods(["GET", "POST"])
def password_reset(request, token):
    link = account_link_get_usable(token=token, kind=LinkKind.PASSWORD_RESET)
    form = NewPasswordForm(request.POST or None)
    if link is None:
        return _link_page(request, "console/password_reset.html", link=None, form=None, status=404)
    if request.method == "POST" and form.is_valid():
        try:
            person = password_reset_complete(token=token, password=form.cleaned_data["password1"])
        except KenpinError as exc:
            form.add_error("password1", exc.message)
        else:
            login(request, person, backend="django.contrib.auth.backends.ModelBackend")
            messages.success(request, "Your new password is set.")
            return redirect("dashboard")
    return _link_page(request, "console/password_reset.html", link=link, form=form, status=400 if form.errors else 200)


# --- Project pages that compose every app --------------------------------------------------------


@require_GET
def project_detail(request, name):
    """A project's overview: its datasets, latest model versions and trial detections."""
    project = project_get_for_user(user=request.user, name=name)
    model_versions = list(model_version_list(project=project)[:5])
    return render(
        request,
        "console/project.html",
        {
            "project": project,
            **dataset_context(project),
            "model_versions": model_versions,
            "trained_version": next((mv for mv in model_versions if mv.is_usable), None),
            "trials": trial_list(project=project)[:5],
            "activity": activity_list(project=project)[:8],
        },
    )


@require_POST
def project_delete(request, name):
    """Delete a project from its settings page (owners), with its hosted models."""
    project = project_get_for_user(user=request.user, name=name, owner=True)
    form = ProjectDeleteForm(request.POST)
    if form.is_valid() and form.cleaned_data["confirm_name"].strip() != project.name:
        form.add_error("confirm_name", f"Type “{project.name}” exactly to delete this project.")
    if not form.is_valid():
        return settings_page(request, project, delete_form=form, status=400)
    hosting.project_delete(project=project)
    messages.success(request, f"Project “{name}” was deleted with its images, models and trial detections.")
    return redirect("dashboard")


class LoginView(auth_views.LoginView):
    """Django's sign-in, throttled: after KENPIN_LOGIN_FAILURES wrong passwords for one username
    within KENPIN_LOGIN_WINDOW seconds (or five times that many from one address), sign-in is
    refused with 429 until the window ends, even with the right password."""

    template_name = "console/login.html"
    redirect_authenticated_user = True

    def post(self, request, *args, **kwargs):
        wait = security.login_refusal_seconds(request, request.POST.get("username", ""))
        if wait:
            minutes = max(1, round(wait / 60))
            context = self.get_context_data(
                throttled=f"Too many failed sign-ins. Try again in {minutes} minute{'s' if minutes > 1 else ''}; "
                "if you forgot your password, ask your Kenpin admin to reset it."
            )
            response = self.render_to_response(context, status=429)
            response["Retry-After"] = str(wait)
            return response
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form):
        security.login_failed(self.request, form.data.get("username", ""))
        return super().form_invalid(form)

    def form_valid(self, form):
        security.login_succeeded(self.request, form.get_user().get_username())
        return super().form_valid(form)


@login_not_required
def bad_request(request, exception=None):
    """handler400: the reason in words, as a page or in the API's error shape."""
    message = bad_request_message(exception)
    if request.path.startswith(API_PREFIXES) or "application/json" in request.headers.get("Accept", ""):
        return JsonResponse({"error": "invalid", "message": message}, status=400)
    return render(request, "400.html", {"message": message}, status=400)
