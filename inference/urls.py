from django.urls import path

from inference import views

app_name = "inference"

urlpatterns = [
    path("", views.trial_index, name="list"),
    path("<int:trial_id>/", views.trial_detail, name="detail"),
]
