import pytest
from django.db import connection
from django.http import Http404
from django.test.utils import CaptureQueriesContext

from tests.factories import UserFactory, make_project, make_version
from training.selectors import model_version_get

pytestmark = pytest.mark.django_db


def test_a_version_is_found_by_its_number_in_its_project_only():
    project, other = make_project(owner=UserFactory()), make_project(owner=UserFactory())
    mv = make_version(project)
    assert model_version_get(project=project, version=mv.version) == mv
    with pytest.raises(Http404):
        model_version_get(project=other, version=mv.version)
    with pytest.raises(Http404):
        model_version_get(project=project, version=mv.version + 1)


def test_a_version_is_found_in_one_query_that_neither_joins_nor_sorts():
    # Every detect call asks; first() joined the project to sort the one row by its name.
    project = make_project(owner=UserFactory())
    mv = make_version(project)
    with CaptureQueriesContext(connection) as queries:
        model_version_get(project=project, version=mv.version)
    [query] = queries.captured_queries
    assert "JOIN" not in query["sql"] and "ORDER BY" not in query["sql"]
