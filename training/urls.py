from django.urls import path

from training import views

app_name = "training"

urlpatterns = [
    path("", views.model_list, name="list"),
    path("train", views.model_start, name="start"),
    path("compare", views.model_compare, name="compare"),
    path("<int:version>/", views.model_detail, name="detail"),
    path("<int:version>/status", views.model_status, name="status"),
    path("<int:version>/cancel", views.model_cancel, name="cancel"),
    path("<int:version>/threshold", views.model_threshold, name="threshold"),
    path("<int:version>/delete", views.model_delete, name="delete"),
    path("<int:version>/results/<int:row_id>/heatmap", views.result_heatmap, name="result_heatmap"),
    path("<int:version>/results/<int:row_id>/mask", views.result_predicted_mask, name="result_mask"),
]
