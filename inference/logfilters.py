"""Logging filters for the workers. Imported by the LOGGING setting, so it imports no Django models."""

import logging

DETECT_TASK = "inference.tasks.detect_anomalies"


class QuietDetectCalls(logging.Filter):
    """Drop the worker's two INFO lines per detect call ("received", "succeeded").

    Detect is the hot path, one call per product photo: at a few calls a second these lines
    would fill the disk, and the web server's access log already records every call. Warnings
    and errors about detect calls (a failed task) still pass.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        return not (record.levelno <= logging.INFO and isinstance(args, dict) and args.get("name") == DETECT_TASK)
