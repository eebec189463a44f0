from django.urls import path

from projects import views

app_name = "projects"

urlpatterns = [
    path("new/", views.project_create, name="create"),
    path("<str:name>/settings/", views.project_settings, name="settings"),
    path("<str:name>/activity/", views.activity_page, name="activity"),
    path("<str:name>/activity.csv", views.activity_csv, name="activity_csv"),
    path("<str:name>/members/", views.member_set, name="member_set"),
    path("<str:name>/members/<int:user_id>/remove", views.member_remove, name="member_remove"),
    path("<str:name>/upload/", views.image_upload_page, name="upload"),
    path("<str:name>/images/", views.image_grid, name="images"),
    path("<str:name>/images/counts", views.image_counts, name="image_counts"),
    path("<str:name>/images/add", views.image_add, name="image_add"),
    path("<str:name>/images/import", views.images_import, name="images_import"),
    path("<str:name>/imports/<int:import_id>/", views.zip_import_page, name="import"),
    path("<str:name>/images/known", views.images_known, name="images_known"),
    path("<str:name>/images/label", views.images_label, name="images_label"),
    path("<str:name>/images/move", views.images_move, name="images_move"),
    path("<str:name>/images/delete", views.images_delete, name="images_delete"),
    path("<str:name>/test-dataset/keep-aside", views.test_dataset_keep_aside, name="test_dataset_keep_aside"),
    path("<str:name>/test-dataset/delete", views.test_dataset_delete, name="test_dataset_delete"),
    path("<str:name>/images/<int:image_id>/", views.image_detail, name="image"),
    path("<str:name>/images/<int:image_id>/set-mask", views.image_mask_set, name="image_set_mask"),
    path("<str:name>/images/<int:image_id>/file", views.image_file, {"kind": "file"}, name="image_file"),
    path("<str:name>/images/<int:image_id>/thumbnail", views.image_file, {"kind": "thumbnail"}, name="image_thumbnail"),
    path("<str:name>/images/<int:image_id>/mask", views.image_mask, name="image_mask"),
    path("<str:name>/images/<int:image_id>/remove-mask", views.image_mask_remove, name="image_remove_mask"),
    path("<str:name>/classes/", views.anomaly_class_create, name="class_create"),
    path("<str:name>/classes/<int:class_id>/", views.anomaly_class_update, name="class_update"),
    path("<str:name>/classes/<int:class_id>/delete", views.anomaly_class_delete, name="class_delete"),
]
