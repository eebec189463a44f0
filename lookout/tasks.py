from celery import shared_task

from lookout import evaluation, importer, packaging


@shared_task(acks_late=True)
def run_dataset_job(job_id: int) -> None:
    importer.dataset_job_run(job_id=job_id)


@shared_task
def sweep_stale_dataset_jobs() -> int:
    return importer.dataset_jobs_sweep_stale()


@shared_task(acks_late=True)
def run_packaging_job(job_id: int) -> None:
    packaging.packaging_job_run(job_id=job_id)


@shared_task
def write_evaluation_outputs() -> int:
    return evaluation.evaluation_outputs_write()
