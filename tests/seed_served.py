"""Run inside a served Kenpin's environment (tests/served.py): a user, an API token and a project
`cookies` whose version 1 holds the given trained model, HOSTED. Prints the token and names as JSON.

    python -m tests.seed_served SPEC.json
"""

import json
import os
import sys
from pathlib import Path


def main(spec_path: str) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from projects.projects import project_create
    from projects.tokens import api_token_create
    from training.models import ModelVersion, Status

    spec = json.loads(Path(spec_path).read_text())
    folder = Path(spec["dir"])
    user = get_user_model().objects.create_superuser("faults", password="a-long-test-password")
    project = project_create(user=user, name="cookies")
    # The graph too, as training stores it: the served workers then run the trained graph
    # instead of exporting one with torch.
    stored = {
        name: default_storage.save(f"projects/{project.pk}/models/1/{name}", ContentFile((folder / name).read_bytes()))
        for name in ("model.safetensors", "model.json", "backbone.onnx")
    }
    ModelVersion.objects.create(
        project=project,
        version=1,
        status=Status.HOSTED,
        status_message="Hosted: ready for detect calls.",
        progress=100,
        weights_file=stored["model.safetensors"],
        config_file=stored["model.json"],
        backbone_file=stored["backbone.onnx"],
        **spec["fields"],
    )
    _, token = api_token_create(user=user, name="faults")
    print(json.dumps({"token": token, "project": "cookies", "version": 1, "username": "faults"}))


if __name__ == "__main__":
    main(sys.argv[1])
