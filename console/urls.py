from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from console import api, views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("setup/", views.setup, name="setup"),
    path(
        "login/",
        auth_views.LoginView.as_view(template_name="console/login.html", redirect_authenticated_user=True),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("account/tokens/", views.api_tokens, name="api_tokens"),
    path("account/tokens/<int:token_id>/revoke", views.api_token_revoke, name="api_token_revoke"),
    path("admin/", admin.site.urls),
    path("projects/", include("projects.urls")),
    path("projects/<str:name>/models/", include("training.urls")),
    path("projects/<str:name>/trials/", include("inference.urls")),
    # The API at /api/ and Lookout for Vision's /2020-11-20/ (console/api.py).
    path("", (api.urlpatterns(), "ninja", "api")),
]
