"""Remote-control commands that reach every inference worker at once (a task reaches one):
load and unload models, and say which ones a worker hosts. (The load command itself lives in
inference.tasks, beside the worker's own loading.)"""

from celery import current_app
from celery.worker.control import control_command, inspect_command

from inference import runtime


def unload_everywhere(*, model_version_ids: list[int]) -> None:
    """Ask every worker to drop these models (fire and forget: a worker that is down holds nothing)."""
    if model_version_ids:
        current_app.control.broadcast("kenpin_unload_models", arguments={"model_version_ids": list(model_version_ids)})


def load_everywhere(*, model_version_ids: list[int]) -> None:
    """Ask every inference worker to load newly hosted versions, so that no first call waits for a load."""
    current_app.control.broadcast("kenpin_load_models", arguments={"model_version_ids": list(model_version_ids)})


@control_command(args=[("model_version_ids", list)], signature="<model_version_ids>")
def kenpin_unload_models(state, model_version_ids: list[int]) -> dict:
    for pk in model_version_ids:
        runtime.unload_model(int(pk))
    return {"ok": f"unloaded {len(model_version_ids)} model version(s)"}


@inspect_command()
def kenpin_hosted_models(state) -> dict:
    """Which model versions this worker holds pinned for hosting.

    `app.control.broadcast("kenpin_hosted_models", reply=True)` asks every worker.
    """
    return {"hosted": runtime.hosted_model_ids()}
