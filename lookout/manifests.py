"""SageMaker Ground Truth manifests as Lookout for Vision read and wrote them: one JSON object a
line, for one image each. Plain Python (no Django), so that it is easy to test line by line.

Classification lines carry a label attribute whose name varies (it is the labelling job's name,
such as `anomaly-label`) and its `<name>-metadata`, whose `class-name` says `normal` or
`anomaly`:

    {"source-ref": "s3://bucket/train/normal/1.jpg", "anomaly-label": 0,
     "anomaly-label-metadata": {"class-name": "normal", "type": "groundtruth/image-classification", ...}}

Segmentation lines add the mask: `anomaly-mask-ref` (a PNG, background white, each anomaly
class in its colour) and `anomaly-mask-ref-metadata` with the `internal-color-map` naming the
colours.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import PurePosixPath
from urllib.parse import quote

import numpy as np

from engine.images import ImageError
from projects.masks import MaskClass, decode_upload, parse_color

MASK_ATTRIBUTE = "anomaly-mask-ref"
BACKGROUND = "#ffffff"
DEFAULT_ANOMALY_COLOR = "#ff0000"  # the colour of DetectAnomalies' single "anomaly" class
MAX_LINE_BYTES = 8192  # the service model's DatasetEntry limit


class ManifestError(ValueError):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class AnomalyClass:
    name: str
    color: str  # "#rrggbb", lower case


@dataclass
class Entry:
    """One manifest line, read."""

    line: int  # 1-based, as people count lines
    source_ref: str
    label: str | None  # "normal", "anomaly", or None for an unlabelled image
    label_attribute: str  # the attribute that held the label ("anomaly-label" when none did)
    mask_ref: str | None = None
    classes: list[AnomalyClass] = field(default_factory=list)  # the colour map's anomaly classes
    background: str = BACKGROUND


def _color(value) -> str:
    try:
        parse_color(value)
    except (TypeError, ValueError):
        raise ManifestError(f"The internal-color-map has a colour that is not #RRGGBB: {value!r}.") from None
    return value.lower()


def _label(obj: dict) -> tuple[str | None, str]:
    """(label, attribute) of a line: the attribute whose `-metadata` is a classification."""
    for key, metadata in obj.items():
        if not key.endswith("-metadata") or not isinstance(metadata, dict):
            continue
        attribute = key[: -len("-metadata")]
        if attribute == MASK_ATTRIBUTE or attribute not in obj:
            continue
        kind = str(metadata.get("type", ""))
        if "class-name" not in metadata and not kind.endswith("image-classification"):
            continue
        class_name = metadata.get("class-name")
        if class_name is not None:
            name = str(class_name).strip().lower()
            if name not in ("normal", "anomaly"):
                raise ManifestError(
                    f"The {key} class-name is {class_name!r}; Lookout for Vision's labels are 'normal' and 'anomaly'."
                )
            return name, attribute
        value = str(obj[attribute]).strip()
        if value not in ("0", "1"):
            raise ManifestError(f"The label {attribute} is {obj[attribute]!r}; use 1 (anomaly) or 0 (normal).")
        return ("anomaly" if value == "1" else "normal"), attribute
    return None, "anomaly-label"


def parse_line(text: str, line: int) -> Entry:
    """One line of a manifest; ManifestError says what is wrong with it."""
    if len(text.encode()) > MAX_LINE_BYTES:
        raise ManifestError(f"The line is longer than {MAX_LINE_BYTES} bytes.")
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise ManifestError(f"The line is not valid JSON ({exc}).") from None
    if not isinstance(obj, dict):
        raise ManifestError("The line is not a JSON object.")
    source_ref = obj.get("source-ref")
    if not isinstance(source_ref, str) or not source_ref.strip():
        raise ManifestError("The line has no source-ref naming its image.")
    label, attribute = _label(obj)
    entry = Entry(line=line, source_ref=source_ref.strip(), label=label, label_attribute=attribute)
    mask_ref = obj.get(MASK_ATTRIBUTE)
    if mask_ref is not None:
        if not isinstance(mask_ref, str) or not mask_ref.strip():
            raise ManifestError(f"The {MASK_ATTRIBUTE} is not a reference to a mask image.")
        color_map = (obj.get(f"{MASK_ATTRIBUTE}-metadata") or {}).get("internal-color-map")
        if not isinstance(color_map, dict) or not color_map:
            raise ManifestError(f"The line has a {MASK_ATTRIBUTE} but no {MASK_ATTRIBUTE}-metadata internal-color-map.")
        for item in color_map.values():
            if not isinstance(item, dict) or not item.get("class-name"):
                raise ManifestError("An internal-color-map entry has no class-name.")
            color = _color(item.get("hex-color"))
            if str(item["class-name"]).strip().lower() == "background":
                entry.background = color
            else:
                entry.classes.append(AnomalyClass(name=str(item["class-name"]).strip(), color=color))
        entry.mask_ref = mask_ref.strip()
        if entry.label is None:
            entry.label = "anomaly"  # a mask says what the image is
    return entry


def parse_manifest(data: bytes) -> tuple[list[Entry], list[tuple[int, str, str]]]:
    """(entries, problems) of a whole manifest; a problem is (line, source-ref or "", message).

    Blank lines are skipped; a line that cannot be read is a problem, and the others still count.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return [], [(0, "", "The manifest is not UTF-8 text (JSON Lines).")]
    entries, problems = [], []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            entries.append(parse_line(raw, number))
        except ManifestError as exc:
            problems.append((number, "", exc.message))
    return entries, problems


def split_s3_uri(uri: str) -> tuple[str, str] | None:
    """("bucket", "key") of an s3:// URI, or None for anything else."""
    if not uri.startswith("s3://"):
        return None
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket or not key:
        return None
    return bucket, key


def file_name(ref: str) -> str:
    """The file name a reference ends with, for people (never used as a path)."""
    return PurePosixPath(ref.split("?", 1)[0]).name or ref


# --- Masks ----------------------------------------------------------------------------------------


def mask_classes(entry: Entry) -> list[MaskClass]:
    """The line's colour map as the classes of projects.masks: index k for its k-th anomaly class."""
    return [MaskClass(index=k, name=c.name, color=c.color) for k, c in enumerate(entry.classes, start=1)]


def read_mask(data: bytes, entry: Entry, *, width: int, height: int) -> np.ndarray | None:
    """A line's colour mask -> (H, W) uint8 class indices (k for entry.classes[k-1]), read by the
    same rules as masks people upload (projects.masks); None for a normal image whose mask marks
    nothing. ManifestError says what is wrong: a wrong size, a colour the map does not name."""
    classes = mask_classes(entry)
    if entry.background not in (BACKGROUND, "#000000"):
        raise ManifestError(f"The mask's background colour is {entry.background}; Kenpin reads white or black.")
    try:
        return decode_upload(
            data, width=width, height=height, classes=classes, binary_class=classes[0] if classes else None
        )
    except ImageError as exc:
        if exc.code == "empty_mask" and entry.label == "normal":
            return None
        raise ManifestError(f"The mask {file_name(entry.mask_ref or '')}: {exc.message}") from None


# --- Writing lines --------------------------------------------------------------------------------


def entry_line(
    *,
    source_ref: str,
    label: str | None,
    label_attribute: str = "anomaly-label",
    mask_ref: str | None = None,
    classes: list[AnomalyClass] | None = None,
    created_at: datetime | None = None,
) -> str:
    """One image as Lookout for Vision's JSON line (the form ListDatasetEntries returned)."""
    created = (created_at or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    line: dict = {"source-ref": source_ref}
    if label is not None:
        line[label_attribute] = 1 if label == "anomaly" else 0
        line[f"{label_attribute}-metadata"] = {
            "class-name": label,
            "confidence": 1,
            "creation-date": created,
            "human-annotated": "yes",
            "job-name": f"labeling-job/{label_attribute}",
            "type": "groundtruth/image-classification",
        }
    if mask_ref is not None:
        classes = classes or [AnomalyClass(name="anomaly", color=DEFAULT_ANOMALY_COLOR)]
        color_map = {"0": {"class-name": "BACKGROUND", "hex-color": BACKGROUND, "confidence": 0}}
        for k, anomaly_class in enumerate(classes, start=1):
            color_map[str(k)] = {"class-name": anomaly_class.name, "hex-color": anomaly_class.color, "confidence": 0}
        line[MASK_ATTRIBUTE] = mask_ref
        line[f"{MASK_ATTRIBUTE}-metadata"] = {
            "internal-color-map": color_map,
            "type": "groundtruth/semantic-segmentation",
            "human-annotated": "yes",
            "creation-date": created,
            "job-name": "labeling-job/anomaly-mask",
        }
    return json.dumps(line, separators=(", ", ": "))


def synthesized_source_ref(image, *, mask: bool = False) -> str:
    """A source-ref for an image that did not come from a manifest (uploaded in the console):
    kenpin://PROJECT/images/ID/NAME (or .../masks/ID.png), which UpdateDatasetEntries finds again."""
    name = quote(image.original_name or f"{image.pk}.{(image.format or 'img').lower()}")
    kind = "masks" if mask else "images"
    return f"kenpin://{image.project.name}/{kind}/{image.pk}/" + (f"{image.pk}.png" if mask else name)


def parse_synthesized_ref(ref: str, project_name: str) -> int | None:
    """The image id of one of our own kenpin:// references to this project, else None."""
    prefix = f"kenpin://{project_name}/images/"
    if not ref.startswith(prefix):
        return None
    first = ref[len(prefix) :].split("/", 1)[0]
    return int(first) if first.isdigit() else None
