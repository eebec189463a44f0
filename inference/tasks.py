from celery import shared_task

from inference import services


@shared_task(acks_late=True)
def run_trial_detection(trial_id: int) -> None:
    services.trial_run(trial_id=trial_id)


@shared_task
def sweep_stale_trials() -> int:
    return services.trial_sweep_stale()
