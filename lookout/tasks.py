from celery import shared_task

from lookout import services


@shared_task(acks_late=True)
def run_dataset_job(job_id: int) -> None:
    services.dataset_job_run(job_id=job_id)


@shared_task
def sweep_stale_dataset_jobs() -> int:
    return services.dataset_jobs_sweep_stale()


@shared_task(acks_late=True)
def run_packaging_job(job_id: int) -> None:
    from lookout.packaging import packaging_job_run

    packaging_job_run(job_id=job_id)


@shared_task
def write_evaluation_outputs() -> int:
    return services.evaluation_outputs_write()
