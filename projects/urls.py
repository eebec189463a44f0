from django.urls import path

from projects import views

app_name = "projects"

urlpatterns = [
    path("new/", views.project_create, name="create"),
    path("<str:name>/", views.project_detail, name="detail"),
    path("<str:name>/images/<int:image_id>/file", views.image_file, {"kind": "file"}, name="image_file"),
    path("<str:name>/images/<int:image_id>/thumbnail", views.image_file, {"kind": "thumbnail"}, name="image_thumbnail"),
    path("<str:name>/images/<int:image_id>/mask", views.image_file, {"kind": "mask"}, name="image_mask"),
]
