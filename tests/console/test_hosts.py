"""A request for a host name Kenpin is not set up for: refused with the name and the fix."""

import pytest

pytestmark = pytest.mark.django_db


def test_a_refused_host_is_named_in_a_readable_page(client):
    response = client.get("/login/", HTTP_HOST="kenpin.example.com")
    assert response.status_code == 400
    page = response.content.decode()
    assert "does not answer to the host name “kenpin.example.com”" in page and "DJANGO_ALLOWED_HOSTS" in page


def test_a_refused_host_is_named_in_the_api_error_shape(client):
    response = client.get("/api/v1/projects", HTTP_HOST="kenpin.example.com")
    assert response.status_code == 400 and response.json()["error"] == "invalid"
    assert "“kenpin.example.com”" in response.json()["message"]
