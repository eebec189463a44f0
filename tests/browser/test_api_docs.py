import pytest

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


def test_the_api_docs_work_with_no_request_leaving_kenpin(page, live_server, screenshot):
    """Swagger UI renders every endpoint from Kenpin's own files; any request to another host
    (a CDN, the online validator) is recorded and aborted, and fails the test."""
    outside = []

    def guard(route):
        if route.request.url.startswith(live_server.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.context.route("**/*", guard)
    page.goto("/api/docs")
    page.wait_for_selector(".opblock-summary-path", timeout=20_000)
    paths = page.locator(".opblock-summary-path").all_inner_texts()
    assert sum("/api/v1/projects" in p for p in paths) >= 20
    assert "Kenpin API" in page.inner_text(".information-container")
    screenshot(page, "api-docs")
    assert outside == []
