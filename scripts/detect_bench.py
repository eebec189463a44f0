#!/usr/bin/env python3
"""Load test of Kenpin's detect API against a running Kenpin (standard library only).

    python scripts/detect_bench.py setup --url http://127.0.0.1:8000 --token TOKEN --data DIR
    python scripts/detect_bench.py run --url http://127.0.0.1:8000 --token TOKEN --project P --version V \
        --data DIR [--sequential 300] [--clients 8] [--seconds 60] [--json FILE]

`setup` creates a project from DIR/normal and DIR/anomaly (20 + 10 images, as Lookout for
Vision's minimum), trains a version, hosts it and prints `PROJECT VERSION`.

`run` calls detect on every image of DIR in turn: first once each, to record each image's
answer; then `--sequential` calls from one client (latency percentiles); then `--clients`
clients at once for `--seconds` (throughput and latency). Every answer is checked: status 200,
the DetectAnomalies shape, and the same body as that image's recorded answer, so that an answer
delivered to the wrong caller, or a wrong one under load, is counted as an error.
"""

import argparse
import base64
import http.client
import json
import math
import mimetypes
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
        self.inference_ms: list[float] = []  # the worker's share of each call (Server-Timing)

    def call(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None):
        headers = {"Authorization": f"Bearer {self.token}"}
        if content_type:
            headers["Content-Type"] = content_type
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, body=body, headers=headers)
                response = self.conn.getresponse()
                timing = response.getheader("Server-Timing") or ""
                if timing.startswith("inference;dur="):
                    self.inference_ms.append(float(timing.split("=", 1)[1]))
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
    assert list(result) == ["Source", "IsAnomalous", "Confidence", "AnomalyMask", "Anomalies"], list(result)
    assert result["Source"] == {"Type": "direct"}
    assert isinstance(result["IsAnomalous"], bool) and 0.0 <= result["Confidence"] <= 1.0
    assert base64.b64decode(result["AnomalyMask"])[:8] == b"\x89PNG\r\n\x1a\n"
    assert result["Anomalies"][0]["Name"] == "background"
    total = sum(a["PixelAnomaly"]["TotalPercentageArea"] for a in result["Anomalies"])
    assert abs(total - 1.0) < 1e-6, total


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

    latencies, errors = [], []
    client.inference_ms.clear()
    for i in range(args.sequential):
        name, data, content_type = images[i % len(images)]
        start = time.perf_counter()
        status, content = client.call("POST", path, data, content_type)
        latencies.append((time.perf_counter() - start) * 1000)
        if status != 200 or content != expected[name]:
            errors.append((name, status))
    if latencies:
        summary["sequential"] = _stats(latencies, errors, sum(latencies) / 1000, client.inference_ms)

    if args.clients:
        results: list[list[float]] = [[] for _ in range(args.clients)]
        failures: list[list] = [[] for _ in range(args.clients)]
        inference: list[list[float]] = [[] for _ in range(args.clients)]
        stop_at = time.monotonic() + args.seconds

        def worker(n: int) -> None:
            own = Client(args.url, args.token)
            own.inference_ms = inference[n]
            i = n * 7
            while time.monotonic() < stop_at:
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

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(args.clients)]
        began = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - began
        summary["concurrent"] = {
            "clients": args.clients,
            **_stats(
                [x for r in results for x in r],
                [x for f in failures for x in f],
                wall,
                [x for r in inference for x in r],
            ),
        }

    print(json.dumps(summary, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    if summary.get("sequential", {}).get("errors") or summary.get("concurrent", {}).get("errors"):
        sys.exit("some answers were wrong")


def _stats(latencies: list[float], errors: list, wall_seconds: float, inference_ms: list[float]) -> dict:
    return {
        "calls": len(latencies),
        "errors": len(errors),
        "error_examples": errors[:5],
        "p50_ms": round(percentile(latencies, 50), 1),
        "p95_ms": round(percentile(latencies, 95), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
        "max_ms": round(max(latencies), 1),
        "per_second": round(len(latencies) / wall_seconds, 1),
        # The inference worker's own time (decode, predict, mask), from the Server-Timing header.
        "worker_p50_ms": round(percentile(inference_ms, 50), 1) if inference_ms else None,
        "worker_p95_ms": round(percentile(inference_ms, 95), 1) if inference_ms else None,
    }


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
    run_parser.add_argument("--clients", type=int, default=8)
    run_parser.add_argument("--seconds", type=float, default=60)
    run_parser.add_argument("--lfv", action="store_true", help="call Lookout for Vision's path instead of v1")
    run_parser.add_argument("--json")
    args = parser.parse_args()
    {"setup": setup, "run": run}[args.command](args)


if __name__ == "__main__":
    main()
