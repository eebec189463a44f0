from celery import shared_task

from training import runner


@shared_task(acks_late=True)
def train_model_version(model_version_id: int) -> None:
    runner.model_version_train(model_version_id=model_version_id)


@shared_task
def sweep_stale_trainings() -> int:
    return runner.model_version_sweep_stale()
