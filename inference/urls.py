from django.urls import path

from inference import views

app_name = "inference"

# Included at projects/<name>/ (console/urls.py): trial detections, and the hosting of a version.
urlpatterns = [
    path("trials/", views.trial_index, name="list"),
    path("trials/<int:trial_id>/", views.trial_detail, name="detail"),
    path("trials/<int:trial_id>/status", views.trial_status, name="status"),
    path("trials/<int:trial_id>/add-to-dataset", views.trial_add_to_dataset, name="add_to_dataset"),
    path("trials/<int:trial_id>/delete", views.trial_delete, name="delete"),
    path("trials/<int:trial_id>/images/<int:trial_image_id>/verdict", views.trial_image_verdict, name="verdict"),
    path(
        "trials/<int:trial_id>/images/<int:trial_image_id>/file",
        views.trial_image_file_view,
        {"kind": "file"},
        name="image_file",
    ),
    path(
        "trials/<int:trial_id>/images/<int:trial_image_id>/thumbnail",
        views.trial_image_file_view,
        {"kind": "thumbnail"},
        name="image_thumbnail",
    ),
    path(
        "trials/<int:trial_id>/images/<int:trial_image_id>/heatmap",
        views.trial_image_file_view,
        {"kind": "heatmap"},
        name="image_heatmap",
    ),
    path(
        "trials/<int:trial_id>/images/<int:trial_image_id>/mask",
        views.trial_image_file_view,
        {"kind": "mask"},
        name="image_mask",
    ),
    path("trials/<int:trial_id>/images/<int:trial_image_id>/paint", views.trial_image_mask, name="image_paint"),
    path("models/<int:version>/hosting", views.model_hosting, name="hosting"),
    path("models/<int:version>/operations", views.model_operations, name="operations"),
    path("models/<int:version>/operations.csv", views.model_operations_csv, name="operations_csv"),
    path(
        "models/<int:version>/operations/<int:record_id>/photo",
        views.detection_file,
        {"kind": "photo"},
        name="detection_photo",
    ),
    path(
        "models/<int:version>/operations/<int:record_id>/mask",
        views.detection_file,
        {"kind": "mask"},
        name="detection_mask",
    ),
]
