"""What a person does in the browser, shared by the browser tests."""

import base64
import mimetypes

from playwright.sync_api import expect

from tests.factories import PASSWORD


def sign_in(page, user):
    page.goto("/login/")
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button:has-text('Sign in')")
    page.wait_for_url("**/")


def drop_files(page, selector, paths):
    """Drop files on an element with a real drop event carrying a DataTransfer, as a person would."""
    files = [
        {
            "name": p.name,
            "type": mimetypes.guess_type(p.name)[0] or "",
            "b64": base64.b64encode(p.read_bytes()).decode(),
        }
        for p in paths
    ]
    data_transfer = page.evaluate_handle(
        """files => {
            const dt = new DataTransfer();
            for (const f of files) {
                const bytes = Uint8Array.from(atob(f.b64), c => c.charCodeAt(0));
                dt.items.add(new File([bytes], f.name, {type: f.type}));
            }
            return dt;
        }""",
        files,
    )
    page.dispatch_event(selector, "dragenter", {"dataTransfer": data_transfer})
    page.dispatch_event(selector, "dragover", {"dataTransfer": data_transfer})
    page.dispatch_event(selector, "drop", {"dataTransfer": data_transfer})


def run_trial(page, name, photos):
    """On the project's trial page (its model chosen already): name a trial, drop the photos, run
    it and wait on its page until it completed."""
    page.fill("#id_name", name)
    drop_files(page, "[data-drop-into]", photos)
    expect(page.locator("#trial-files-count")).to_have_text(f"{len(photos)} photos chosen")
    page.click("#run-trial")
    page.wait_for_url("**/trials/*/")
    expect(page.locator("#trial-status")).to_have_attribute("data-status", "COMPLETED", timeout=120_000)
