"""The console's Lookout for Vision pages of a project, under /projects/NAME/lookout/.
(The API at /2020-11-20/ is lookout.api.urlpatterns.)"""

from django.urls import path

from lookout import views

app_name = "lookout"
urlpatterns = [
    path("", views.page, name="page"),
    path("imports/<int:job_id>", views.job, name="job"),
    path("export", views.export, name="export"),
    path("packages", views.package, name="package"),
    path("packages/<str:job_name>.zip", views.package_download, name="package_download"),
]
