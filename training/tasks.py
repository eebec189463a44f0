from celery import shared_task

from training import services


@shared_task(acks_late=True)
def train_model_version(model_version_id: int) -> None:
    services.model_version_train(model_version_id=model_version_id)


@shared_task
def sweep_stale_trainings() -> int:
    return services.model_version_sweep_stale()
