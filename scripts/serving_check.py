"""A serving-only install (requirements/serving.txt: no torch) serves a model trained by the full
install with the same answers, and what it costs (docs/benchmarks.md records the numbers).

    .venv/bin/python scripts/serving_check.py train OUT      # full install: train, score, save
    SERVING/bin/python scripts/serving_check.py serve OUT    # any install: host it, detect, compare

`train` trains on the cookie fixtures (20 normal + 10 anomalous, masks included) with the engine
and writes OUT/model/ (the three files a model version stores) and OUT/expected.json (the
engine's prediction for each of the 22 test photos). `serve` runs in a clean data folder what
`make run` runs (`manage.py serve`: SQLite, embedded Redis, web, workers), stores the model as
version 1 of a project, hosts it, calls detect over HTTP on the same photos, and fails unless
every answer equals the full install's prediction exactly. It also scores the photos with the
engine in-process, says whether torch can be imported, and prints the install's size and the
resident memory of the web and inference worker processes, as JSON.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

# Score in process as `serve`'s inference worker does, with one thread each for OpenBLAS and
# onnxruntime (console/management/commands/serve.py), before numpy is imported. OpenBLAS's AVX2
# sgemm rounds the last bit of some rows differently where two threads split the neighbour search
# (found on a 2-core AVX2 machine: 8 of the 22 scores ~3e-8 apart, the verdicts and masks equal):
# "exactly" holds between runs with the same thread counts.
os.environ.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", KENPIN_THREADS="1")

ROOT = Path(__file__).resolve().parent.parent
COOKIES = ROOT / "tests" / "fixtures" / "cookies"
TRAIN = (("normal", "train-normal", 20), ("anomaly", "train-anomaly", 10))
TEST = (("normal", "test-normal", 14), ("anomaly", "test-anomaly", 8))


def photos(kind: str, prefix: str, count: int) -> list[Path]:
    paths = sorted((COOKIES / kind).glob(f"{prefix}-*"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
    return paths[:count]


def test_photos() -> list[Path]:
    return [p for kind, prefix, count in TEST for p in photos(kind, prefix, count)]


def predictions(model) -> dict:
    from engine import decode_image

    out = {}
    for path in test_photos():
        p = model.predict(decode_image(path.read_bytes()))
        out[path.name] = {
            "score": p.score,
            "is_anomalous": bool(p.is_anomalous),
            "confidence": p.confidence,
            "anomalous_fraction": p.anomalous_fraction,
        }
    return out


def train(out: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from engine import Sample, decode_image, decode_mask
    from engine import train as engine_train

    samples = []
    for label, (kind, prefix, count) in enumerate(TRAIN):
        for path in photos(kind, prefix, count):
            image = decode_image(path.read_bytes())
            mask_path = COOKIES / "mask" / f"{path.stem}.png"
            mask = None
            if label and mask_path.exists():
                mask = decode_mask(mask_path.read_bytes(), width=image.shape[1], height=image.shape[0])
            samples.append(Sample(key=path.name, image=image, label=label, mask=mask))
    result = engine_train(train=samples)
    (out / "model").mkdir(parents=True, exist_ok=True)
    for name, data in result.model.to_files().items():
        (out / "model" / name).write_bytes(data)
    fields = {
        "backbone": result.model.backbone,
        "threshold": result.model.threshold,
        "trained_threshold": result.model.threshold,
        "metrics": result.metrics,
        "evaluation": result.evaluation,
    }
    (out / "fields.json").write_text(json.dumps(fields, default=float))
    (out / "expected.json").write_text(json.dumps(predictions(result.model), indent=1))
    print(json.dumps({"trained": len(samples), "scored": len(test_photos()), "out": str(out)}))


def seed(out: Path) -> None:
    """Inside the served Kenpin's environment: a user, a token, project `cookies`, version 1 HOSTED."""
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from projects.projects import project_create
    from projects.tokens import api_token_create
    from training.models import ModelVersion, Status

    user = get_user_model().objects.create_superuser("serving-check", password="a-long-check-password")
    project = project_create(user=user, name="cookies")
    stored = {
        name: default_storage.save(
            f"projects/{project.pk}/models/1/{name}", ContentFile((out / "model" / name).read_bytes())
        )
        for name in ("model.safetensors", "model.json", "backbone.onnx")
    }
    ModelVersion.objects.create(
        project=project,
        version=1,
        status=Status.HOSTED,
        status_message="Hosted: ready for detect calls.",
        progress=100,
        weights_file=stored["model.safetensors"],
        config_file=stored["model.json"],
        backbone_file=stored["backbone.onnx"],
        **json.loads((out / "fields.json").read_text()),
    )
    _, token = api_token_create(user=user, name="serving-check")
    print(json.dumps({"token": token}))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def install_size_mb() -> float:
    total = 0
    for folder, _, files in os.walk(sys.prefix):
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                total += os.path.getsize(path)
    return round(total / 2**20)


def rss_mb(serve_pid: int) -> dict:
    import psutil

    found = {}
    for child in psutil.Process(serve_pid).children(recursive=True):
        cmd = " ".join(child.cmdline())
        rss = round(child.memory_info().rss / 2**20)
        if "gunicorn" in cmd:
            found.setdefault("web", []).append(rss)  # the master, then its workers
        elif "inference@" in cmd:
            found.setdefault("inference_worker", []).append(rss)
        elif "training@" in cmd:
            found.setdefault("training_worker", []).append(rss)
    return found


def detect(url: str, token: str, path: Path) -> dict:
    request = urllib.request.Request(
        url,
        data=path.read_bytes(),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "image/jpeg"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)["DetectAnomalyResult"]


def serve(out: Path) -> None:
    import importlib.util

    sys.path.insert(0, str(ROOT))
    from engine import AnomalyModel

    expected = json.loads((out / "expected.json").read_text())
    files = {p.name: p.read_bytes() for p in (out / "model").iterdir()}
    in_process = predictions(AnomalyModel.from_files(files))
    mismatched = [name for name in expected if in_process[name] != expected[name]]

    data = Path(tempfile.mkdtemp(prefix="kenpin-serving-check-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KENPIN_", "DATABASE_URL", "REDIS_URL", "S3_"))}
    env.update(
        KENPIN_DATA_DIR=str(data),
        KENPIN_PORT=str(port),
        KENPIN_EMBEDDED_REDIS_PORT=str(free_port()),
        DJANGO_SETTINGS_MODULE="console.settings",
        PYTHONUNBUFFERED="1",
    )
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    seeded = subprocess.run(
        [sys.executable, __file__, "seed", str(out)], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    )
    token = json.loads(seeded.stdout.strip().splitlines()[-1])["token"]
    log = open(data / "serve.out", "w")
    process = subprocess.Popen([sys.executable, "manage.py", "serve"], cwd=ROOT, env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 240
        while "Kenpin is running at" not in (data / "serve.out").read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"serve did not start:\n{(data / 'serve.out').read_text()[-3000:]}")
            time.sleep(0.5)
        url = f"http://127.0.0.1:{port}/api/v1/projects/cookies/models/1/detect"
        served = {}
        for _ in range(120):  # the inference worker loads hosted models as it starts
            try:
                detect(url, token, test_photos()[0])
                break
            except OSError:
                time.sleep(1)
        for path in test_photos():
            answer = detect(url, token, path)
            # The "anomaly" entry is left out when no pixel is anomalous.
            anomaly = [
                a["PixelAnomaly"]["TotalPercentageArea"] for a in answer["Anomalies"] if a["Name"] != "background"
            ]
            served[path.name] = {
                "is_anomalous": answer["IsAnomalous"],
                "confidence": answer["Confidence"],
                "anomalous_fraction": sum(anomaly) if anomaly else 0.0,
            }
        memory = rss_mb(process.pid)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
        shutil.rmtree(data, ignore_errors=True)
    served_mismatched = [
        name
        for name in expected
        if served[name] != {k: expected[name][k] for k in ("is_anomalous", "confidence", "anomalous_fraction")}
    ]
    report = {
        "python": sys.prefix,
        "torch_importable": importlib.util.find_spec("torch") is not None,
        "install_mb": install_size_mb(),
        "photos": len(expected),
        "anomalous": sum(p["is_anomalous"] for p in expected.values()),
        "engine_scores_identical": not mismatched,
        "detect_answers_identical": not served_mismatched,
        "rss_mb": memory,
    }
    print(json.dumps(report))
    if mismatched or served_mismatched:
        raise SystemExit(f"different answers: engine {mismatched}, detect {served_mismatched}")


if __name__ == "__main__":
    command, folder = sys.argv[1], Path(sys.argv[2])
    {"train": train, "seed": seed, "serve": serve}[command](folder)
