#!/usr/bin/env python3
"""Load test of Kenpin's detect API against a running Kenpin (standard library only), and the
stages of a detect call replayed in process (with the project's virtual environment).

    python scripts/detect_bench.py setup --url http://127.0.0.1:8000 --token TOKEN --data DIR
    python scripts/detect_bench.py run --url http://127.0.0.1:8000 --token TOKEN --project P --version V \
        --data DIR [--sequential 300] [--clients 1,2,4,8] [--seconds 30] [--run-file serve.json] [--json FILE]
    .venv/bin/python scripts/detect_bench.py stages --model MODEL_DIR --data DIR [--repeat 3] [--json FILE]

`setup` creates a project from DIR/normal and DIR/anomaly (20 + 10 images, as Lookout for
Vision's minimum), trains a version, hosts it and prints `PROJECT VERSION`.

`run` calls detect on every image of DIR in turn: first once each, to record each image's
answer; then `--sequential` calls from one client (latency percentiles); then, for each number
of `--clients`, that many clients at once for `--seconds` (throughput and latency). Every answer
is checked: status 200, the DetectAnomalies shape, and the same body as that image's recorded
answer, so that an answer delivered to the wrong caller, or a wrong one under load, is counted
as an error. Each phase reports the median of every stage the server names in its
Server-Timing header (the inference worker's: take, decode, predict, mask_png; the web
process's: access, body, handoff, record), the 1-minute load average before and after, and,
with `--run-file` (serve's KENPIN_DATA_DIR/run/serve.json, on the server's machine), the CPU
milliseconds each of serve's processes spent per photo: unlike latency, that does not depend on
what else the machine runs. `--batch N` sends N photos per request to detect-batch in the
concurrent phases (each photo's answer checked against its single answer).

`stages` replays a detect call's stages in this process on one thread (decode, resize,
features, search, head, mask, familiarity, PNG, JSON) and reports each one's CPU time per photo,
and the compute floor: features + search.
"""

import argparse
import base64
import http.client
import json
import math
import mimetypes
import os
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit


class Client:
    """One keep-alive HTTP connection, as a production-line client would hold."""

    def __init__(self, url: str, token: str):
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port or 80
        self.token = token
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        self.timings: list[dict[str, float]] = []  # each call's Server-Timing: {stage: ms}

    def call(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None):
        headers = {"Authorization": f"Bearer {self.token}"}
        if content_type:
            headers["Content-Type"] = content_type
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, body=body, headers=headers)
                response = self.conn.getresponse()
                timing = response.getheader("Server-Timing")
                if timing:
                    self.timings.append(_server_timing(timing))
                return response.status, response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
                if attempt == 2:
                    raise

    def json(self, method: str, path: str, data=None):
        body = json.dumps(data).encode() if data is not None else None
        status, content = self.call(method, path, body, "application/json" if body else None)
        return status, json.loads(content) if content else None


def _server_timing(header: str) -> dict[str, float]:
    """'inference;dur=29.3, decode;dur=5.1' -> {"inference": 29.3, "decode": 5.1}."""
    stages = {}
    for metric in header.split(","):
        name, _, params = metric.strip().partition(";")
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "dur":
                stages[name] = float(value)
    return stages


def _images(data: Path) -> list[tuple[str, bytes, str]]:
    files = sorted(p for p in (data / "normal").iterdir()) + sorted(p for p in (data / "anomaly").iterdir())
    return [(p.name, p.read_bytes(), mimetypes.guess_type(p.name)[0] or "application/octet-stream") for p in files]


def _multipart(fields: dict, file_name: str, file_bytes: bytes, file_type: str) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    for key, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode())
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{file_name}"\r\n'
        f"Content-Type: {file_type}\r\n\r\n".encode()
        + file_bytes
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def _multipart_files(images: list[tuple[str, bytes, str]]) -> tuple[bytes, str]:
    """Photos as the parts named `files` of one multipart body (the batch endpoint's)."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n".encode()
        + data
        + b"\r\n"
        for name, data, content_type in images
    ]
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def setup(args) -> None:
    client = Client(args.url, args.token)
    project = args.project or f"bench-{uuid.uuid4().hex[:6]}"
    status, body = client.json("POST", "/api/v1/projects", {"name": project, "description": "detect benchmark"})
    assert status == 201, body
    for folder, label, count in (("normal", "normal", 20), ("anomaly", "anomaly", 10)):
        for path in sorted((args.data / folder).iterdir())[:count]:
            body, content_type = _multipart(
                {"label": label}, path.name, path.read_bytes(), mimetypes.guess_type(path.name)[0] or "image/jpeg"
            )
            status, content = client.call("POST", f"/api/v1/projects/{project}/images", body, content_type)
            assert status == 201, content
    status, body = client.json("POST", f"/api/v1/projects/{project}/models", {})
    assert status == 202, body
    version = body["version"]
    _wait(client, project, version, "TRAINED", failed="TRAINING_FAILED")
    status, body = client.json("POST", f"/api/v1/projects/{project}/models/{version}/start")
    assert status == 202, body
    _wait(client, project, version, "HOSTED", failed="HOSTING_FAILED")
    print(project, version)


def _wait(client: Client, project: str, version: int, goal: str, *, failed: str, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = client.json("GET", f"/api/v1/projects/{project}/models/{version}")
        if body["status"] == goal:
            return
        if body["status"] == failed:
            sys.exit(f"{failed}: {body['status_message']}")
        time.sleep(1)
    sys.exit(f"not {goal} after {timeout} s")


def check_shape(body: dict) -> None:
    result = body["DetectAnomalyResult"]
    assert list(result)[:5] == ["Source", "IsAnomalous", "Confidence", "AnomalyMask", "Anomalies"], list(result)
    assert result["Source"] == {"Type": "direct"}
    assert isinstance(result["IsAnomalous"], bool) and 0.0 <= result["Confidence"] <= 1.0
    assert base64.b64decode(result["AnomalyMask"])[:8] == b"\x89PNG\r\n\x1a\n"
    assert result["Anomalies"][0]["Name"] == "background"
    total = sum(a["PixelAnomaly"]["TotalPercentageArea"] for a in result["Anomalies"])
    assert abs(total - 1.0) < 1e-6, total


def _cpu_seconds(run_file: Path | None) -> dict[str, float]:
    """CPU seconds (user + system) used so far by each process `manage.py serve` runs, with its
    children (gunicorn's workers), read from /proc: Linux only, on the server's machine."""
    if run_file is None:
        return {}
    children = json.loads(run_file.read_text())["children"]
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        parents[int(entry.name)] = int(fields[1])
        ticks[int(entry.name)] = int(fields[11]) + int(fields[12])
    hz = os.sysconf("SC_CLK_TCK")
    result = {}
    for child in children:
        group, todo = set(), [child["pid"]]
        while todo:
            pid = todo.pop()
            group.add(pid)
            todo += [p for p, parent in parents.items() if parent == pid and p not in group]
        result[child["name"]] = sum(ticks.get(pid, 0) for pid in group) / hz
    return result


def _cpu_per_call(before: dict[str, float], after: dict[str, float], calls: int) -> dict[str, float]:
    """CPU ms per call of each serving process, and their total: what a call costs the machine
    whatever else runs on it (wall-clock latency and calls/s depend on that load)."""
    if not before or not calls:
        return {}
    per_call = {name: round((after[name] - before[name]) * 1000 / calls, 2) for name in before if name in after}
    per_call["total"] = round(sum(per_call.values()), 2)
    return per_call


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values), max(1, math.ceil(p / 100 * len(values)))) - 1]  # nearest rank


def run(args) -> None:
    images = _images(args.data)
    path = f"/api/v1/projects/{args.project}/models/{args.version}/detect"
    if args.lfv:
        path = f"/2020-11-20/projects/{args.project}/models/{args.version}/detect"
    client = Client(args.url, args.token)
    expected = {}
    for name, data, content_type in images:  # one answer per image, the reference for all later calls
        status, content = client.call("POST", path, data, content_type)
        assert status == 200, (name, status, content[:300])
        check_shape(json.loads(content))
        expected[name] = content
    summary = {"images": len(images), "image_bytes_mean": statistics.mean(len(d) for _, d, _ in images)}

    if args.sequential:
        latencies, errors = [], []
        client.timings.clear()
        load, cpu = os.getloadavg()[0], _cpu_seconds(args.run_file)
        began = time.perf_counter()
        for i in range(args.sequential):
            name, data, content_type = images[i % len(images)]
            start = time.perf_counter()
            status, content = client.call("POST", path, data, content_type)
            latencies.append((time.perf_counter() - start) * 1000)
            if status != 200 or content != expected[name]:
                errors.append((name, status))
        summary["sequential"] = {
            **_stats(latencies, errors, time.perf_counter() - began, client.timings),
            "load_before": load,
            "load_after": os.getloadavg()[0],
            "cpu_ms_per_photo": _cpu_per_call(cpu, _cpu_seconds(args.run_file), len(latencies)),
        }

    summary["concurrent"] = [
        _concurrent(args, clients, images, expected, path) for clients in args.clients if clients > 0
    ]
    print(json.dumps(summary, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    if summary.get("sequential", {}).get("errors") or any(c["errors"] for c in summary["concurrent"]):
        sys.exit("some answers were wrong")


def _concurrent(args, clients: int, images, expected: dict, path: str) -> dict:
    """`clients` clients calling at once for `args.seconds`, each on its own connection."""
    results: list[list[float]] = [[] for _ in range(clients)]
    failures: list[list] = [[] for _ in range(clients)]
    timings: list[list[dict]] = [[] for _ in range(clients)]
    stop_at = time.monotonic() + args.seconds

    batch = args.batch

    def worker(n: int) -> None:
        own = Client(args.url, args.token)
        own.timings = timings[n]
        i = n * 7
        while time.monotonic() < stop_at:
            if batch > 1:  # several photos per request: one answer per photo, each as it answered alone
                chosen = [images[(i + k) % len(images)] for k in range(batch)]
                i += batch
                body, content_type = _multipart_files(chosen)
                start = time.perf_counter()
                try:
                    status, content = own.call("POST", f"{path}-batch", body, content_type)
                except OSError as exc:
                    failures[n].append((chosen[0][0], repr(exc)))
                    continue
                results[n].append((time.perf_counter() - start) * 1000)
                answers = json.loads(content).get("Results", []) if status == 200 else []
                for k, (name, _, _) in enumerate(chosen):
                    single = json.loads(expected[name])["DetectAnomalyResult"]
                    if len(answers) != batch or answers[k]["DetectAnomalyResult"] != single:
                        failures[n].append((name, status))
                continue
            name, data, content_type = images[i % len(images)]
            i += 1
            start = time.perf_counter()
            try:
                status, content = own.call("POST", path, data, content_type)
            except OSError as exc:
                failures[n].append((name, repr(exc)))
                continue
            results[n].append((time.perf_counter() - start) * 1000)
            if status != 200 or content != expected[name]:
                failures[n].append((name, status))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(clients)]
    load, cpu = os.getloadavg()[0], _cpu_seconds(args.run_file)
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - began
    calls = sum(len(r) for r in results)
    return {
        "clients": clients,
        "photos_per_request": batch,
        "photos_per_second": round(calls * batch / wall, 1),
        **_stats(
            [x for r in results for x in r], [x for f in failures for x in f], wall, [x for t in timings for x in t]
        ),
        "load_before": load,
        "load_after": os.getloadavg()[0],
        "cpu_ms_per_photo": _cpu_per_call(cpu, _cpu_seconds(args.run_file), calls * batch),
    }


def _stats(latencies: list[float], errors: list, wall_seconds: float, timings: list[dict]) -> dict:
    inference_ms = [t["inference"] for t in timings if "inference" in t]
    return {
        "calls": len(latencies),
        "errors": len(errors),
        "error_examples": errors[:5],
        "p50_ms": round(percentile(latencies, 50), 1),
        "p95_ms": round(percentile(latencies, 95), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
        "max_ms": round(max(latencies), 1),
        "per_second": round(len(latencies) / wall_seconds, 1),
        # The inference worker's own time (reading the photo, decoding, predicting, the mask).
        "worker_p50_ms": round(percentile(inference_ms, 50), 1) if inference_ms else None,
        "worker_p95_ms": round(percentile(inference_ms, 95), 1) if inference_ms else None,
        # Each stage's median over the calls, from the Server-Timing header (docs/api.md).
        "stages_p50_ms": {
            stage: round(statistics.median(t[stage] for t in timings if stage in t), 2)
            for stage in dict.fromkeys(k for t in timings for k in t)
        },
    }


def stages(args) -> None:
    """Each stage of a detect call replayed in this process on one thread, per photo (ms).

    Needs the project's virtual environment (numpy, onnxruntime, Pillow) and a trained model's
    folder (model.json, model.safetensors, backbone.onnx). The stages are the ones the inference
    worker runs (inference.worker.detect_in_worker, engine.AnomalyModel.predict), called one by
    one; the replayed score must equal predict's, so that the replay cannot drift from it.
    """
    import os

    os.environ["KENPIN_THREADS"] = "1"  # before onnxruntime's session is made: one thread, the floor
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import numpy as np

    from engine import AnomalyModel
    from engine.familiarity import embedding, image_stats
    from engine.images import decode_image
    from inference.lfv import lfv_mask_png

    model = AnomalyModel.from_files({p.name: p.read_bytes() for p in args.model.iterdir() if p.is_file()})
    images = _images(args.data)
    times: dict[str, list[float]] = {}
    for rep in range(args.repeat + 1):  # the first pass warms up and is not counted
        for name, data, _ in images:
            clock = _CpuClock()
            image = decode_image(data)
            clock.mark("decode")
            resized = model.extractor.resize(image)
            clock.mark("resize")
            outputs = model.extractor.session.run(None, {"image": resized[None]})  # as FeatureExtractor.extract
            features = np.ascontiguousarray(outputs[0][0].transpose(1, 2, 0))
            fine = np.ascontiguousarray(outputs[1][0].transpose(1, 2, 0)) if len(outputs) > 1 else None
            clock.mark("features")
            distance = model.scorer.distance_map(features, model.sigma)
            clock.mark("search")
            raw, probs = model.maps(features, fine)  # the search again, then the head: the head is the rest
            clock.mark("head", less=clock.marks["search"])
            whole = model.whole_image(features)  # the whole-image term, where the model has one
            seen = resized if model.guides_on_input else image  # as AnomalyModel.predict
            prediction = model.prediction(raw, probs, image.shape[:2], model.threshold, whole=whole, image=seen)
            clock.mark("mask")
            if model.familiarity is not None:
                model.familiarity.assess(image_stats(image), embedding(features))
            clock.mark("familiarity")
            png = lfv_mask_png(prediction.mask)
            clock.mark("png")
            json.dumps({"score": prediction.score, "mask_png": base64.b64encode(png).decode()})
            clock.mark("json")
            if rep == 0:
                expected = model.predict(image)
                assert prediction.score == expected.score, (name, prediction.score, expected.score)
                assert np.array_equal(distance, model.scorer.distance_map(features, model.sigma))
                continue
            for stage, ms in clock.marks.items():
                times.setdefault(stage, []).append(ms)
    calls = len(images) * args.repeat
    result = {
        "photos": calls,
        "threads": 1,
        "stages_p50_ms": {stage: round(statistics.median(v), 2) for stage, v in times.items()},
        "stages_mean_ms": {stage: round(statistics.mean(v), 2) for stage, v in times.items()},
    }
    floor = result["stages_mean_ms"]["features"] + result["stages_mean_ms"]["search"]
    result["compute_floor_ms"] = round(floor, 2)  # features + search per photo, one thread
    result["compute_floor_calls_per_s_per_core"] = round(1000 / floor, 1)
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


class _CpuClock:
    """CPU milliseconds of this thread per stage: unlike wall-clock time, not inflated by
    whatever else runs on the machine (onnxruntime runs on the calling thread with one thread)."""

    def __init__(self):
        self.clock = time.thread_time()
        self.marks: dict[str, float] = {}

    def mark(self, stage: str, *, less: float = 0.0) -> None:
        now = time.thread_time()
        self.marks[stage] = max(0.0, (now - self.clock) * 1000 - less)
        self.clock = now


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("setup", "run"):
        p = sub.add_parser(name)
        p.add_argument("--url", default="http://127.0.0.1:8000")
        p.add_argument("--token", required=True)
        p.add_argument("--data", type=Path, required=True, help="a folder with normal/ and anomaly/ images")
        p.add_argument("--project", required=(name == "run"))
    run_parser = sub.choices["run"]
    run_parser.add_argument("--version", type=int, required=True)
    run_parser.add_argument("--sequential", type=int, default=300)
    run_parser.add_argument(
        "--clients", type=lambda v: [int(n) for n in v.split(",") if n], default=[1, 2, 4, 8], help="e.g. 1,2,4,8"
    )
    run_parser.add_argument("--seconds", type=float, default=30, help="for each number of clients")
    run_parser.add_argument(
        "--run-file",
        type=Path,
        help="serve's run file (KENPIN_DATA_DIR/run/serve.json), to report the CPU each process spends per call",
    )
    run_parser.add_argument("--lfv", action="store_true", help="call Lookout for Vision's path instead of v1")
    run_parser.add_argument(
        "--batch", type=int, default=1, help="photos per request for the clients at once (detect-batch when > 1)"
    )
    run_parser.add_argument("--json")
    stages_parser = sub.add_parser("stages")
    stages_parser.add_argument("--model", type=Path, required=True, help="a trained model's folder")
    stages_parser.add_argument("--data", type=Path, required=True, help="a folder with normal/ and anomaly/ images")
    stages_parser.add_argument("--repeat", type=int, default=3)
    stages_parser.add_argument("--json")
    args = parser.parse_args()
    {"setup": setup, "run": run, "stages": stages}[args.command](args)


if __name__ == "__main__":
    main()
