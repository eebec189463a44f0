from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from console import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("setup/", views.setup, name="setup"),
    path("login/", auth_views.LoginView.as_view(template_name="console/login.html", redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("projects/", include("projects.urls")),
    path("projects/<str:name>/models/", include("training.urls")),
    path("projects/<str:name>/trials/", include("inference.urls")),
]
