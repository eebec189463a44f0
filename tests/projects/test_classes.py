"""Anomaly classes and class-index masks: the services, the console pages and the API."""

import io

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image as PILImage

from projects import classes
from projects.models import AnomalyClass, Image, MaskKind
from projects.selectors import anomaly_class_usage, image_mask_indices, masks_using_class
from tests.factories import UserFactory, add_image, make_project

pytestmark = pytest.mark.django_db

W, H = 64, 48


def png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    PILImage.fromarray(array).save(out, format="PNG")
    return out.getvalue()


def colour_mask(boxes: dict, *, width=W, height=H) -> bytes:
    """Each class's box in its colour on white: {"#rrggbb": (x0, y0, x1, y1)}."""
    rgb = np.full((height, width, 3), 255, dtype=np.uint8)
    for colour, (x0, y0, x1, y1) in boxes.items():
        rgb[y0:y1, x0:x1] = [int(colour[i : i + 2], 16) for i in (1, 3, 5)]
    return png(rgb)


def binary_mask(box, *, width=W, height=H) -> bytes:
    grey = np.zeros((height, width), dtype=np.uint8)
    x0, y0, x1, y1 = box
    grey[y0:y1, x0:x1] = 255
    return png(grey)


@pytest.fixture
def cookies(user):
    return make_project(owner=user, name="cookies")


@pytest.fixture
def two_classes(cookies):
    crack = classes.anomaly_class_create(project=cookies, name="crack", color="#e6194b")
    chip = classes.anomaly_class_create(project=cookies, name="missing chip", color="#3cb44b")
    return crack, chip


# --- Services -----------------------------------------------------------------------------------


def test_classes_take_indices_from_1_and_free_colours_when_none_is_given(cookies):
    crack = classes.anomaly_class_create(project=cookies, name="crack")
    chip = classes.anomaly_class_create(project=cookies, name=" missing   chip ")
    assert (crack.index, chip.index) == (1, 2) and chip.name == "missing chip"
    assert crack.color != chip.color and all(c.startswith("#") and len(c) == 7 for c in (crack.color, chip.color))


@pytest.mark.parametrize(
    "name, color, code",
    [
        ("", "#123456", "name_required"),
        ("x" * 65, "#123456", "name_too_long"),
        ("Background", "#123456", "reserved_name"),
        ("dent", "red", "invalid_color"),
        ("dent", "#ffffff", "invalid_color"),
        ("dent", "#000000", "invalid_color"),
        ("CRACK", "#123456", "name_taken"),
        ("dent", "#E6194B", "color_taken"),
    ],
)
def test_a_bad_or_taken_class_is_refused_and_nothing_changes(two_classes, cookies, name, color, code):
    with pytest.raises(Exception) as caught:
        classes.anomaly_class_create(project=cookies, name=name, color=color)
    assert caught.value.code == code and caught.value.message
    assert AnomalyClass.objects.filter(project=cookies).count() == 2


def test_renaming_and_recolouring_rewrite_no_mask(two_classes, cookies):
    crack, _ = two_classes
    image = add_image(cookies, width=W, height=H, mask=colour_mask({"#e6194b": (5, 5, 20, 10)}))
    stored = image.mask.name
    classes.anomaly_class_update(anomaly_class=crack, name="hairline crack", color="#4363d8")
    image.refresh_from_db()
    assert image.mask.name == stored
    assert (image_mask_indices(image=image)[5:10, 5:20] == crack.index).all()
    with pytest.raises(Exception) as caught:
        classes.anomaly_class_update(anomaly_class=crack, name="Missing Chip")
    assert caught.value.code == "name_taken"


def test_a_colour_mask_stores_each_class_as_its_index(two_classes, cookies):
    crack, chip = two_classes
    image = add_image(
        cookies, width=W, height=H, mask=colour_mask({"#e6194b": (5, 5, 20, 10), "#3cb44b": (30, 20, 40, 30)})
    )
    assert image.label == "anomaly" and image.mask_kind == MaskKind.CLASS_INDEX
    indices = image_mask_indices(image=image)
    assert int((indices == crack.index).sum()) == 15 * 5 and int((indices == chip.index).sum()) == 10 * 10


def test_a_black_and_white_mask_marks_the_class_named_or_the_only_one(cookies, two_classes):
    image = add_image(cookies, width=W, height=H)
    with pytest.raises(Exception) as caught:
        classes.image_set_mask(image=image, mask=binary_mask((0, 0, 8, 8)))
    assert caught.value.code == "class_required" and "crack" in caught.value.message
    classes.image_set_mask(image=image, mask=binary_mask((0, 0, 8, 8)), class_name="Missing chip")
    assert set(np.unique(image_mask_indices(image=image))) == {0, two_classes[1].index}
    with pytest.raises(Exception) as caught:
        classes.image_set_mask(image=image, mask=binary_mask((0, 0, 8, 8)), class_name="dent")
    assert caught.value.code == "unknown_class"


@pytest.mark.parametrize(
    "mask, code",
    [
        (b"", "empty"),
        (colour_mask({"#e6194b": (0, 0, 5, 5)}, width=32, height=32), "wrong_size"),
        (colour_mask({"#e6194b": (0, 0, 5, 5), "#123456": (10, 10, 20, 20)}), "unknown_color"),
        (b"not a png at all", "not_an_image"),
    ],
)
def test_a_bad_mask_is_refused_in_words_and_the_stored_one_is_kept(two_classes, cookies, mask, code):
    image = add_image(cookies, width=W, height=H, mask=colour_mask({"#3cb44b": (1, 1, 9, 9)}))
    before = (image.mask.name, image_mask_indices(image=image).copy())
    with pytest.raises(Exception) as caught:
        classes.image_set_mask(image=image, mask=mask)
    assert caught.value.code == code and caught.value.message
    image.refresh_from_db()
    assert image.mask.name == before[0] and (image_mask_indices(image=image) == before[1]).all()
    if code == "unknown_color":
        assert "#123456" in caught.value.message and "100 pixels" in caught.value.message


def test_deleting_a_class_turns_its_pixels_to_background_in_the_masks_using_it(two_classes, cookies):
    crack, chip = two_classes
    both = add_image(
        cookies, width=W, height=H, mask=colour_mask({"#e6194b": (5, 5, 20, 10), "#3cb44b": (30, 20, 40, 30)})
    )
    only_crack = add_image(cookies, width=W, height=H, mask=colour_mask({"#e6194b": (0, 0, 4, 4)}))
    only_chip = add_image(cookies, width=W, height=H, mask=colour_mask({"#3cb44b": (0, 0, 4, 4)}))
    chip_mask = only_chip.mask.name
    assert {i.pk for i in masks_using_class(anomaly_class=crack)} == {both.pk, only_crack.pk}

    with pytest.raises(Exception) as caught:  # someone painted crack since the person was asked
        classes.anomaly_class_delete(anomaly_class=crack, masks_expected=1)
    assert caught.value.code == "class_in_use" and "2 masks" in caught.value.message
    assert AnomalyClass.objects.filter(pk=crack.pk).exists()

    assert classes.anomaly_class_delete(anomaly_class=crack, masks_expected=2) == 2
    both.refresh_from_db(), only_crack.refresh_from_db(), only_chip.refresh_from_db()
    assert set(np.unique(image_mask_indices(image=both))) == {0, chip.index}
    assert not only_crack.mask and only_crack.label == "anomaly"
    assert only_chip.mask.name == chip_mask
    # The freed index goes to the next class.
    assert classes.anomaly_class_create(project=cookies, name="dent").index == crack.index


def test_masks_per_class_are_counted_from_the_rows_without_reading_a_mask_file(
    two_classes, cookies, monkeypatch, django_assert_max_num_queries
):
    crack, chip = two_classes
    both = add_image(
        cookies, width=W, height=H, mask=colour_mask({"#e6194b": (5, 5, 20, 10), "#3cb44b": (30, 20, 40, 30)})
    )
    add_image(cookies, width=W, height=H, mask=colour_mask({"#e6194b": (0, 0, 4, 4)}))
    painted = classes.image_set_mask(
        image=add_image(cookies, width=W, height=H), mask=colour_mask({"#3cb44b": (0, 0, 4, 4)})
    )
    add_image(cookies, width=W, height=H)
    assert anomaly_class_usage(project=cookies) == {crack.index: 2, chip.index: 2}

    classes.image_remove_mask(image=both)
    monkeypatch.setattr("projects.selectors.image_mask_indices", lambda **kw: pytest.fail("a mask file was read"))
    with django_assert_max_num_queries(2):  # one per question
        assert anomaly_class_usage(project=cookies) == {crack.index: 1, chip.index: 1}
        assert [i.pk for i in masks_using_class(anomaly_class=chip)] == [painted.pk]


def test_a_mask_stored_before_its_classes_were_kept_is_read_once_and_its_row_filled_in(two_classes, cookies):
    crack, chip = two_classes
    image = add_image(cookies, width=W, height=H, mask=colour_mask({"#3cb44b": (0, 0, 4, 4)}))
    Image.objects.filter(pk=image.pk).update(mask_classes_used=None)  # as stored before
    assert anomaly_class_usage(project=cookies) == {chip.index: 1}
    image.refresh_from_db()
    assert image.mask_classes_used == [chip.index]


def test_masks_stored_before_classes_become_the_first_class(cookies):
    image = add_image(cookies, width=W, height=H, mask=binary_mask((2, 2, 6, 6)))
    # As stored before classes (and before the classes of each mask were kept on its row).
    Image.objects.filter(pk=image.pk).update(mask_kind=MaskKind.BINARY, mask_classes_used=None)
    image.refresh_from_db()
    first = classes.anomaly_class_create(project=cookies, name="crack")
    assert [i.pk for i in masks_using_class(anomaly_class=first)] == [image.pk]


def test_painting_on_an_image_deleted_meanwhile_stores_nothing(
    two_classes, cookies, django_capture_on_commit_callbacks
):
    image = add_image(cookies, width=W, height=H)
    Image.objects.filter(pk=image.pk).delete()
    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(Exception) as caught:
            classes.image_set_mask(image=image, mask=colour_mask({"#e6194b": (0, 0, 4, 4)}))
    assert "deleted" in str(caught.value)
    from django.core.files.storage import default_storage

    _, files = default_storage.listdir(f"projects/{cookies.pk}/masks")
    assert files == []


# --- Console pages ------------------------------------------------------------------------------


def test_the_settings_page_creates_renames_and_deletes_classes_asking_first(signed_in, cookies):
    response = signed_in.post("/projects/cookies/classes/", {"name": "crack", "color": "#e6194b"})
    assert response.status_code == 302
    crack = AnomalyClass.objects.get(project=cookies)
    response = signed_in.post("/projects/cookies/classes/", {"name": "Crack", "color": "#3cb44b"})
    assert response.status_code == 400 and "already has a class named" in response.content.decode()
    page = signed_in.get("/projects/cookies/settings/").content.decode()
    assert 'data-class-name="crack"' in page and 'value="#e6194b"' in page

    signed_in.post(f"/projects/cookies/classes/{crack.pk}/", {"name": "hairline", "color": "#e6194b"})
    crack.refresh_from_db()
    assert crack.name == "hairline"

    add_image(cookies, width=W, height=H, mask=colour_mask({"#e6194b": (0, 0, 4, 4)}))
    ask = signed_in.get(f"/projects/cookies/classes/{crack.pk}/delete").content.decode()
    assert "1 mask changes" in ask and 'name="masks_expected" value="1"' in ask
    assert signed_in.post(f"/projects/cookies/classes/{crack.pk}/delete", {"masks_expected": 1}).status_code == 302
    assert not AnomalyClass.objects.exists() and not Image.objects.get().mask


def test_the_painter_saves_a_colour_mask_and_hears_back_in_json(signed_in, two_classes, cookies):
    image = add_image(cookies, width=W, height=H, label="normal")
    page = signed_in.get(f"/projects/cookies/images/{image.pk}/").content.decode()
    assert 'id="painter"' in page and 'data-class="1"' in page and "kenpin/painter.js" in page
    url = f"/projects/cookies/images/{image.pk}/set-mask"
    mask = colour_mask({"#3cb44b": (10, 10, 20, 20)})
    response = signed_in.post(url, {"mask": SimpleUploadedFile("mask.png", mask)}, HTTP_ACCEPT="application/json")
    assert response.status_code == 200 and response.json()["label"] == "anomaly"
    drawn = signed_in.get(f"/projects/cookies/images/{image.pk}/mask")
    assert drawn["Cache-Control"] == "private, no-cache"
    rgb = np.asarray(PILImage.open(io.BytesIO(drawn.content)).convert("RGB"))
    assert tuple(rgb[15, 15]) == (0x3C, 0xB4, 0x4B) and tuple(rgb[0, 0]) == (255, 255, 255)

    bad = signed_in.post(
        url,
        {"mask": SimpleUploadedFile("m.png", colour_mask({"#abcdef": (0, 0, 3, 3)}))},
        HTTP_ACCEPT="application/json",
    )
    assert bad.status_code == 400 and bad.json()["error"] == "unknown_color"
    Image.objects.filter(pk=image.pk).delete()
    gone = signed_in.post(url, {"mask": SimpleUploadedFile("mask.png", mask)}, HTTP_ACCEPT="application/json")
    assert gone.status_code == 404


def test_a_viewer_cannot_paint_or_change_classes(client, cookies, two_classes):
    from tests.factories import PASSWORD

    viewer = UserFactory()
    from projects.projects import member_set

    member_set(project=cookies, username=viewer.username, role="viewer")
    client.login(username=viewer.username, password=PASSWORD)
    image = add_image(cookies, width=W, height=H)
    assert 'id="painter"' not in client.get(f"/projects/cookies/images/{image.pk}/").content.decode()
    response = client.post(
        f"/projects/cookies/images/{image.pk}/set-mask",
        {"mask": SimpleUploadedFile("m.png", colour_mask({"#e6194b": (0, 0, 3, 3)}))},
    )
    assert response.status_code == 403
    assert client.post("/projects/cookies/classes/", {"name": "dent", "color": "#4363d8"}).status_code == 403
    assert AnomalyClass.objects.count() == 2


# --- API ----------------------------------------------------------------------------------------


def test_the_api_manages_classes(user, api_client, cookies):
    api = api_client(user)
    created = api.post("/api/v1/projects/cookies/classes", {"name": "crack", "color": "#E6194B"}, "application/json")
    assert created.status_code == 201
    assert {k: created.json()[k] for k in ("index", "name", "color")} == {
        "index": 1,
        "name": "crack",
        "color": "#e6194b",
    }
    again = api.post("/api/v1/projects/cookies/classes", {"name": "CRACK"}, "application/json")
    assert again.status_code == 409 and again.json()["error"] == "name_taken"
    chip = api.post("/api/v1/projects/cookies/classes", {"name": "chip"}, "application/json").json()
    assert [c["name"] for c in api.get("/api/v1/projects/cookies/classes").json()] == ["crack", "chip"]
    patched = api.patch(f"/api/v1/projects/cookies/classes/{chip['id']}", {"color": "#4363d8"}, "application/json")
    assert patched.json()["color"] == "#4363d8" and patched.json()["name"] == "chip"

    image = add_image(cookies, width=W, height=H)
    assert (
        api.put(
            f"/api/v1/projects/cookies/images/{image.pk}/mask",
            colour_mask({"#4363d8": (0, 0, 5, 5)}),
            content_type="image/png",
        ).status_code
        == 200
    )
    refused = api.delete(f"/api/v1/projects/cookies/classes/{chip['id']}")
    assert (
        refused.status_code == 409 and refused.json()["error"] == "class_in_use" and "(1)" in refused.json()["message"]
    )
    done = api.delete(f"/api/v1/projects/cookies/classes/{chip['id']}?masks=1")
    assert done.status_code == 200 and done.json() == {"masks_changed": 1}
    assert api.delete(f"/api/v1/projects/cookies/classes/{chip['id']}").status_code == 404


def test_the_api_puts_and_gets_masks_binary_and_colour(user, api_client, cookies, two_classes):
    api = api_client(user)
    image = add_image(cookies, width=W, height=H, label="normal")
    url = f"/api/v1/projects/cookies/images/{image.pk}/mask"
    assert api.get(url).status_code == 404
    body = api.put(url, binary_mask((4, 4, 12, 12)), content_type="image/png")
    assert body.status_code == 400 and body.json()["error"] == "class_required"
    body = api.put(url + "?class=crack", binary_mask((4, 4, 12, 12)), content_type="image/png").json()
    assert body["label"] == "anomaly" and body["has_mask"] is True
    binary = np.asarray(PILImage.open(io.BytesIO(api.get(url + "?style=binary").content)))
    assert int((binary == 255).sum()) == 64 and binary.shape == (H, W)

    colours = colour_mask({"#e6194b": (0, 0, 5, 5), "#3cb44b": (30, 30, 40, 40)})
    assert api.put(url, colours, content_type="image/png").status_code == 200
    got = api.get(url)
    assert got["Content-Type"] == "image/png"
    assert (
        np.asarray(PILImage.open(io.BytesIO(got.content)).convert("RGB"))
        == np.asarray(PILImage.open(io.BytesIO(colours)))
    ).all()

    for data, code in (
        (b"", "empty"),
        (colour_mask({"#e6194b": (0, 0, 5, 5)}, width=W + 1), "wrong_size"),
        (colour_mask({"#010203": (0, 0, 5, 5)}), "unknown_color"),
    ):
        response = api.put(url, data, content_type="image/png")
        assert response.status_code == 400 and response.json()["error"] == code, code
    assert (
        np.asarray(PILImage.open(io.BytesIO(api.get(url).content)).convert("RGB"))
        == np.asarray(PILImage.open(io.BytesIO(colours)))
    ).all()

    assert api.delete(url).json()["has_mask"] is False
    Image.objects.filter(pk=image.pk).delete()
    assert api.put(url, colours, content_type="image/png").status_code == 404


def test_an_upload_with_a_colour_mask_uses_the_class_colours(user, api_client, cookies, two_classes):
    from tests.factories import image_bytes

    api = api_client(user)
    response = api.post(
        "/api/v1/projects/cookies/images",
        {
            "file": SimpleUploadedFile("a.png", image_bytes(width=W, height=H)),
            "mask": SimpleUploadedFile("m.png", colour_mask({"#3cb44b": (0, 0, 6, 6)})),
        },
    )
    assert response.status_code == 201 and response.json()["has_mask"]
    indices = image_mask_indices(image=Image.objects.get(pk=response.json()["id"]))
    assert int((indices == two_classes[1].index).sum()) == 36
