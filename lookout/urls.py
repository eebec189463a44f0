"""Lookout for Vision's REST paths, mounted at /2020-11-20/ by console/urls.py."""

from django.urls import path, re_path

from lookout import api

urlpatterns = [path(route, api.endpoint(routes)) for route, routes in api.ROUTES]
# Anything else under the prefix answers in AWS's error format too.
urlpatterns.append(re_path(r"^.*$", api.unknown))
