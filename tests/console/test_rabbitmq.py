"""KENPIN_BROKER_URL: Kenpin on RabbitMQ (this machine's, guest/guest on 127.0.0.1:5672), with
Redis kept for results and detect calls (Redis lists). A whole Kenpin (`manage.py serve`) runs on
its own virtual host, so that its queues meet no one else's."""

import shutil
import subprocess
import uuid

import pytest
import requests

from tests.served import Served, detect_once, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

RABBITMQ = "amqp://guest:guest@127.0.0.1:5672"


def rabbitmqctl(*args: str) -> str:
    return subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def vhost():
    if not shutil.which("rabbitmqctl"):
        pytest.skip("rabbitmqctl is not installed: no RabbitMQ on this machine")
    name = f"kenpin-test-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", name)
    rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    yield name
    rabbitmqctl("delete_vhost", name)


def test_kenpin_runs_on_rabbitmq_with_the_consumer_timeout_long_trainings_need(
    tmp_path, vhost, trained_cookie_model, cookies_folder
):
    served = Served(tmp_path, KENPIN_BROKER_URL=f"{RABBITMQ}/{vhost}", KENPIN_TRAINING_MAX_SECONDS="36000").start()
    try:
        info = served.seed(trained_cookie_model)
        auth = {"Authorization": f"Bearer {info['token']}"}
        photo = (cookies_folder / "anomaly").glob("test-*").__next__().read_bytes()
        url = f"{served.url}/api/v1/projects/cookies"
        session = requests.Session()
        wait_for(
            lambda: detect_once(session, f"{url}/models/1/detect", info["token"], photo).status_code == 200,
            60,
            "detect answers with RabbitMQ as the broker",
            interval=0.5,
        )
        # A late-acknowledged background task through RabbitMQ: a trial detection.
        trial = session.post(
            f"{url}/trials", headers=auth, data={"model_version": 1}, files={"files": ("a.jpg", photo, "image/jpeg")}
        )
        assert trial.status_code == 202, trial.text
        body = wait_for(
            lambda: (
                (b := session.get(f"{url}/trials/{trial.json()['id']}", headers=auth).json())["status"]
                in ("COMPLETED", "FAILED")
                and b
            ),
            60,
            "the trial ended",
            interval=0.5,
        )
        assert body["status"] == "COMPLETED", body

        # The queues live in RabbitMQ, the training queue with a 10-hour consumer timeout.
        queues = {
            line.split("\t")[0]: line.split("\t", 1)[1]
            for line in rabbitmqctl("list_queues", "-p", vhost, "name", "arguments").splitlines()
            if "\t" in line
        }
        assert {"training", "inference", "default"} <= set(queues), queues
        assert "x-consumer-timeout" in queues["training"] and "36000000" in queues["training"]
    finally:
        served.stop()
