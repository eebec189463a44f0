from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from console import api, views
from lookout import api as lookout_api

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("setup/", views.setup, name="setup"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("account/tokens/", views.api_tokens, name="api_tokens"),
    path("account/tokens/<int:token_id>/revoke", views.api_token_revoke, name="api_token_revoke"),
    path("people/", views.people, name="people"),
    path("people/new", views.person_create, name="person_create"),
    path("people/invite", views.person_invite, name="person_invite"),
    path("people/<int:user_id>/reset", views.person_reset, name="person_reset"),
    path("people/<int:user_id>/set", views.person_set, name="person_set"),
    path("people/links/<int:link_id>/revoke", views.link_revoke, name="link_revoke"),
    path("welcome/<str:token>/", views.welcome, name="welcome"),
    path("reset/<str:token>/", views.password_reset, name="password_reset"),
    path("admin/", admin.site.urls),
    path("projects/", include("projects.urls")),
    # After projects.urls, whose projects/new/ would otherwise be taken for a project's name.
    path("projects/<str:name>/", views.project_detail, name="project"),
    path("projects/<str:name>/delete", views.project_delete, name="project_delete"),
    path("projects/<str:name>/models/", include("training.urls")),
    path("projects/<str:name>/", include("inference.urls")),
    path("projects/<str:name>/lookout/", include("lookout.urls")),
    # Amazon Lookout for Vision's API, at its own paths (lookout/api.py).
    path("2020-11-20/", include(lookout_api.urlpatterns())),
    # Kenpin's own API at /api/ (console/api.py).
    path("", (api.urlpatterns(), "ninja", "api")),
]

handler400 = "console.views.bad_request"
