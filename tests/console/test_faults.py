"""Fault injection with real processes: kill -9 each process of a running Kenpin (`manage.py
serve`, as `make run` starts it) while a client keeps calling detect, and kill -9 serve itself.

The service must heal: the killed process is started again, detect answers 200 again within
30 s (503 with Retry-After at worst meanwhile, never 500 and never a wrong answer), a queued
trial detection is neither lost nor run twice, and nothing stays stuck. The recovery times are
printed (docs/benchmarks.md records them).
"""

import threading
import time

import pytest
import requests

from tests.conftest import cookie_photos
from tests.served import Served, detect_once, process_alive, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

RECOVERY_LIMIT = 30.0  # seconds: the target
PHOTOS = cookie_photos("normal", "test", 2) + cookie_photos("anomaly", "test", 2)


@pytest.fixture(scope="module")
def served(tmp_path_factory, trained_cookie_model):
    # Sweeps act after 10 s instead of 2 minutes, so that a lost or stuck job shows within the test.
    kenpin = Served(tmp_path_factory.mktemp("served"), KENPIN_STALE_AFTER="10").start()
    try:
        kenpin.seed_info = kenpin.seed(trained_cookie_model)
        yield kenpin
    finally:
        kenpin.stop()


class DetectClient:
    """Calls detect in a loop on one keep-alive session, recording each outcome with its time."""

    def __init__(self, served: Served, expected: dict[str, bytes]):
        info = served.seed_info
        self.url = f"{served.url}/api/v1/projects/{info['project']}/models/{info['version']}/detect"
        self.token = info["token"]
        self.expected = expected
        self.outcomes: list[tuple[float, float, str]] = []  # (sent, answered, "200" | "503" | error name)
        self.wrong: list[str] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        session = requests.Session()
        i = 0
        while not self.stopping.is_set():
            photo = PHOTOS[i % len(PHOTOS)]
            i += 1
            sent = time.monotonic()
            try:
                response = detect_once(session, self.url, self.token, photo.read_bytes())
                outcome = str(response.status_code)
                if response.status_code == 200 and response.content != self.expected[photo.name]:
                    self.wrong.append(photo.name)
                if response.status_code == 503 and not response.headers.get("Retry-After"):
                    self.wrong.append(f"503 without Retry-After: {response.text}")
            except requests.RequestException as exc:
                outcome = type(exc).__name__
                session = requests.Session()
                time.sleep(0.2)
            self.outcomes.append((sent, time.monotonic(), outcome))
            time.sleep(0.05)

    def recovered_after(self, moment: float, timeout: float, streak: int = 5) -> float:
        """Seconds from `moment` until detect answered 200 again for good: the first of `streak`
        successes in a row among the calls sent after `moment`."""

        def found():
            run = []
            for sent, done, outcome in list(self.outcomes):
                if sent < moment:
                    continue
                run = run + [done] if outcome == "200" else []
                if len(run) == streak:
                    return run[0]
            return None

        return wait_for(found, timeout, "detect answers 200 again") - moment

    def outcomes_between(self, start: float, end: float) -> set[str]:
        return {o for sent, _, o in self.outcomes if start <= sent < end}


def expected_answers(served: Served) -> dict[str, bytes]:
    info = served.seed_info
    url = f"{served.url}/api/v1/projects/{info['project']}/models/{info['version']}/detect"
    session = requests.Session()
    answers = {}
    for photo in PHOTOS:
        response = wait_for(
            lambda photo=photo: (
                (r := detect_once(session, url, info["token"], photo.read_bytes())).status_code == 200 and r
            ),
            120,
            "the hosted model answers",
            interval=0.5,
        )
        answers[photo.name] = response.content
    return answers


def api(served: Served, method: str, path: str, **kwargs) -> requests.Response:
    headers = {"Authorization": f"Bearer {served.seed_info['token']}"}
    return requests.request(
        method, f"{served.url}/api/v1/projects/cookies{path}", headers=headers, timeout=60, **kwargs
    )


def status_of_trial(served: Served, trial_id: int) -> dict | None:
    """The trial's record, or None while the web server does not answer (it was just killed)."""
    try:
        return api(served, "GET", f"/trials/{trial_id}").json()
    except requests.ConnectionError:
        return None


def test_kill_9_of_each_process_heals_while_detect_keeps_answering(served):
    import os
    import signal

    expected = expected_answers(served)
    # Project images for a trial detection queued right before the inference worker is killed.
    ids = []
    for photo in PHOTOS[:2]:
        response = api(served, "POST", "/images", files={"file": (photo.name, photo.read_bytes(), "image/jpeg")})
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])

    client = DetectClient(served, expected)
    client.thread.start()
    recoveries = {}
    try:
        time.sleep(2)
        for name in ("inference-worker", "training-worker", "scheduler", "redis", "handoff-redis", "web"):
            if name == "inference-worker":
                trial = api(served, "POST", "/trials", data={"model_version": 1, "image_ids": ids})
                assert trial.status_code == 202, trial.text
                trial_id = trial.json()["id"]
            old = served.pids()[name]
            killed = time.monotonic()
            os.kill(old, signal.SIGKILL)
            wait_for(lambda name=name, old=old: served.pids().get(name, old) != old, 20, f"{name} started again")
            recoveries[name] = client.recovered_after(killed, RECOVERY_LIMIT + 30)
            time.sleep(1)
            outcomes = client.outcomes_between(killed, time.monotonic())
            # Only the web server's death leaves nobody to answer: its callers see refused connections.
            allowed = {"200", "503"} | ({"ConnectionError"} if name == "web" else set())
            assert outcomes <= allowed, f"after kill -9 of {name}: {outcomes}"
        restarts = served.output
        for name in recoveries:
            assert f"{name} stopped (killed by SIGKILL)" in restarts and f"{name} started again" in restarts
    finally:
        client.stopping.set()
        client.thread.join(90)
    print("\nrecovery after kill -9 (s):", {k: round(v, 1) for k, v in recoveries.items()})
    assert client.wrong == []
    assert all(seconds <= RECOVERY_LIMIT for seconds in recoveries.values()), recoveries
    assert "500" not in {o for _, _, o in client.outcomes}

    # The trial queued before the inference worker's death is not lost, run twice or stuck: it
    # completed with every image predicted once, or, when the kill caught it running, failed with
    # a message that says so (as a killed training does).
    body = wait_for(
        lambda: (b := status_of_trial(served, trial_id)) and b["status"] in ("COMPLETED", "FAILED") and b,
        90,
        "the trial detection ended",
        interval=1,
    )
    if body["status"] == "FAILED":
        assert "stopped responding" in body["status_message"], body
    else:
        images = api(served, "GET", f"/trials/{trial_id}/images").json()["items"]
        assert len(images) == 2 and all(row["is_anomalous"] is not None for row in images)


def test_kill_9_of_serve_takes_its_processes_with_it_and_a_new_serve_starts_clean(served):
    import os
    import signal

    children = served.pids()
    os.kill(served.process.pid, signal.SIGKILL)
    served.process.wait(10)
    wait_for(lambda: not any(process_alive(pid) for pid in children.values()), 15, "every child of serve died")
    # Their own children too (gunicorn's workers, Celery's pool): nothing answers on the port.
    wait_for(lambda: not _answers(served.url), 15, "the web port is free")

    started = time.monotonic()
    served.start()
    expected_answers(served)  # waits until the hosted model answers again
    print(f"\ndetect answers {time.monotonic() - started:.1f} s after a new serve starts")


def _answers(url: str) -> bool:
    try:
        requests.get(url + "/login/", timeout=1)
        return True
    except requests.RequestException:
        return False


def test_eight_clients_with_a_failing_call_every_tenth_lose_no_connection_and_get_no_wrong_answer(served):
    """8 keep-alive clients call detect for KENPIN_LOAD_SECONDS (15 s here; 60 s for
    docs/benchmarks.md), every 10th call a request that must fail (404, 401, 400, 409, 413 in
    turn, each with a photo-sized body): 0 connection errors, 0 wrong answers."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    seconds = float(os.environ.get("KENPIN_LOAD_SECONDS", "15"))
    expected = expected_answers(served)
    info = served.seed_info
    base = f"{served.url}/api/v1/projects"
    good = f"{base}/cookies/models/1/detect"
    auth = {"Authorization": f"Bearer {info['token']}", "Content-Type": "image/jpeg"}
    photo = PHOTOS[0].read_bytes()
    failing = [
        (404, "POST", f"{base}/no-such-project/models/1/detect", auth, photo),
        (401, "POST", good, {"Authorization": "Bearer kp_wrong", "Content-Type": "image/jpeg"}, photo),
        (400, "POST", good, auth, b"not an image" * 40_000),
        (409, "DELETE", f"{base}/cookies/models/1", auth, photo),  # hosted: stop it first
        (413, "POST", good, auth, b"x" * (50 * 1024 * 1024 + 1)),
    ]

    def client(n: int) -> dict:
        session = requests.Session()
        counts = {"calls": 0, "errors": 0, "wrong": 0, "failing": 0, "seen": []}
        deadline = time.monotonic() + seconds
        i = 0
        while time.monotonic() < deadline or i < 10:  # each client makes at least one failing call
            i += 1
            try:
                if i % 10 == 0:
                    status, method, url, headers, body = failing[(i // 10 + n) % len(failing)]
                    response = session.request(method, url, data=body, headers=headers, timeout=60)
                    counts["failing"] += 1
                    ok = response.status_code == status and bool(response.json().get("message"))
                else:
                    p = PHOTOS[(i + n) % len(PHOTOS)]
                    response = session.post(good, data=p.read_bytes(), headers=auth, timeout=60)
                    ok = response.status_code == 200 and response.content == expected[p.name]
                if not ok:
                    counts["wrong"] += 1
                    counts["seen"].append(
                        f"{response.request.method} {response.url}: {response.status_code} {response.text[:120]}"
                    )
            except requests.RequestException as exc:
                counts["errors"] += 1
                counts["seen"].append(repr(exc)[:160])
                session = requests.Session()
            counts["calls"] += 1
        return counts

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(client, range(8)))
    total = {key: sum(r[key] for r in results) for key in ("calls", "errors", "wrong", "failing")}
    print(f"\n8 clients for {seconds:.0f} s:", total)
    assert total["errors"] == 0 and total["wrong"] == 0, (total, [s for r in results for s in r["seen"]][:10])
    assert total["failing"] >= 8
