from django.urls import path

from training import views

app_name = "training"

urlpatterns = [
    path("", views.model_list, name="list"),
    path("train", views.model_start, name="start"),
    path("<int:version>/", views.model_detail, name="detail"),
    path("<int:version>/status", views.model_status, name="status"),
    path("<int:version>/cancel", views.model_cancel, name="cancel"),
]
