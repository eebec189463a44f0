"""Rows for tests. Users come from factory_boy; projects and images are made through the
services, so that tests see the same rows people make. Images are real, made by Pillow."""

import io
import itertools

import factory
import numpy as np
from django.contrib.auth import get_user_model
from PIL import Image as PILImage

from projects.models import Role
from projects.services import dataset_add_image, member_set, project_create

PASSWORD = "a-long-test-password"
_counter = itertools.count()


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def save_password(obj, create, extracted, **kwargs):
        if create:
            obj.save()


def image_bytes(*, width: int = 64, height: int = 48, fmt: str = "PNG", mode: str = "RGB", seed: int | None = None) -> bytes:
    """A real encoded image of random pixels; each call gives different bytes unless seeded."""
    rng = np.random.default_rng(next(_counter) if seed is None else seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    array = rng.integers(0, 256, size=(height, width, channels), dtype=np.uint8)
    image = PILImage.fromarray(array.squeeze(-1) if channels == 1 else array, mode=mode)
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def make_project(*, owner, name: str | None = None, **members_by_role):
    """A project owned by `owner`; keyword arguments add members, e.g. viewer=user."""
    project = project_create(user=owner, name=name or f"project-{next(_counter)}")
    for role, member in members_by_role.items():
        member_set(project=project, username=member.username, role=Role(role))
    return project


def add_image(project, *, label: str = "unlabeled", split: str = "train", user=None, mask: bytes | None = None, **kwargs):
    return dataset_add_image(
        project=project, data=image_bytes(**kwargs), name="generated.png", label=label, split=split, user=user, mask=mask
    )
