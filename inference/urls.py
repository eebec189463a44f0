from django.urls import path

from inference import views

app_name = "inference"

urlpatterns = [
    path("", views.trial_index, name="list"),
    path("<int:trial_id>/", views.trial_detail, name="detail"),
    path("<int:trial_id>/status", views.trial_status, name="status"),
    path("<int:trial_id>/add-to-dataset", views.trial_add_to_dataset, name="add_to_dataset"),
    path("<int:trial_id>/delete", views.trial_delete, name="delete"),
    path("<int:trial_id>/images/<int:trial_image_id>/verdict", views.trial_image_verdict, name="verdict"),
    path(
        "<int:trial_id>/images/<int:trial_image_id>/file",
        views.trial_image_file_view,
        {"kind": "file"},
        name="image_file",
    ),
    path(
        "<int:trial_id>/images/<int:trial_image_id>/thumbnail",
        views.trial_image_file_view,
        {"kind": "thumbnail"},
        name="image_thumbnail",
    ),
    path(
        "<int:trial_id>/images/<int:trial_image_id>/heatmap",
        views.trial_image_file_view,
        {"kind": "heatmap"},
        name="image_heatmap",
    ),
]
