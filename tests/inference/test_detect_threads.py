"""How many threads a detect call gets: every detect thread's core when it is the worker's only
call, one when it overlaps another (inference.worker.CallsInFlight)."""

import threading
import time
from types import SimpleNamespace

import numpy as np

from engine.model import Prediction
from inference import handoff, runtime, worker
from tests.factories import image_bytes


class FakeModel:
    """Records the threads each predict asked for; the first predict waits until a second one
    has asked, so that the two calls overlap, when `hold_first` is set."""

    kind = "classification"
    classes = ["anomaly"]

    def __init__(self, *, hold_first=False):
        self.threads = []
        self.predicting = threading.Event()
        self.second_asked = threading.Event()
        self.hold_first = hold_first

    def predict(self, image, *, threshold, threads=None):
        self.threads.append(threads)
        if len(self.threads) == 1:
            self.predicting.set()
            if self.hold_first:
                assert self.second_asked.wait(10)
        else:
            self.second_asked.set()
        mask = np.zeros(image.shape[:2], bool)
        return Prediction(
            is_anomalous=False,
            confidence=0.9,
            score=0.1,
            anomaly_map=np.zeros((2, 2), np.float32),
            mask=mask,
            anomalous_fraction=0.0,
            class_mask=mask.astype(np.uint8),
        )


class Worker:
    """A worker with two cores and two detect threads, taking calls from `pending`."""

    def __init__(self, monkeypatch, model, *, expected):
        self.pending, self.answers, self.stop = [], [], threading.Event()
        lock = threading.Lock()

        def take(**kwargs):
            with lock:
                if self.pending:
                    return self.pending.pop(0)
            self.stop.wait(0.01)
            return None

        def answer(*, call_id, answer):
            self.answers.append(call_id)
            if len(self.answers) == expected:
                self.stop.set()

        monkeypatch.setattr(handoff, "worker_take", take)
        monkeypatch.setattr(handoff, "worker_answer", answer)
        monkeypatch.setattr(runtime, "hosted_model", lambda pk, weights: model)
        monkeypatch.setattr(worker.in_flight, "lone_threads", 2)
        self.threads = [
            threading.Thread(
                target=worker.detect_serve,
                kwargs={"queues": ["inference"], "worker": "w", "stop": self.stop},
                daemon=True,  # a failing test must not leave pytest waiting for them at exit
            )
            for _ in range(2)
        ]

    def send(self, n):
        work = {"model_version": 1, "weights": "w.safetensors", "threshold": 0.5}
        self.pending.append(handoff.Call(call_id=f"call-{n}", work=work, data=image_bytes(), received=0.0))

    def join(self):
        for t in self.threads:
            t.join(10)
        self.stop.set()  # stops them where a call went unanswered, before the assertions fail


def test_a_lone_call_gets_a_thread_per_detect_thread(monkeypatch):
    model = FakeModel()
    w = Worker(monkeypatch, model, expected=2)
    w.send(1)
    for t in w.threads:
        t.start()
    assert model.predicting.wait(10)
    while worker.in_flight.count:  # the first is answered, then the second comes
        time.sleep(0.005)
    w.send(2)
    w.join()
    assert w.answers == ["call-1", "call-2"] and model.threads == [2, 2]
    assert worker.in_flight.count == 0


def test_a_call_that_overlaps_another_gets_the_default_thread(monkeypatch):
    model = FakeModel(hold_first=True)  # the first call predicts until the second has asked
    w = Worker(monkeypatch, model, expected=2)
    w.send(1)
    for t in w.threads:
        t.start()
    assert model.predicting.wait(10)  # alone when it asked
    w.send(2)  # taken while the first is in flight
    w.join()
    assert sorted(w.answers) == ["call-1", "call-2"] and model.threads == [2, None]
    assert worker.in_flight.count == 0


def test_a_detect_call_beside_a_hosting_warm_up_gets_the_default_thread(monkeypatch):
    seen = []

    class Model:
        def predict(self, image, *, threshold, threads=None):
            with worker.in_flight.call():  # a detect call arrives while the warm-up predicts
                seen.append(worker.in_flight.threads())

    monkeypatch.setattr(runtime, "pin_model", lambda mv: Model())
    monkeypatch.setattr(worker.in_flight, "lone_threads", 2)
    assert worker._pin(SimpleNamespace(pk=1, threshold=0.5), expected="HOSTED") is not None
    assert seen == [None, None] and worker.in_flight.count == 0
