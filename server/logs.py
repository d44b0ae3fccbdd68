"""Structured logging for every `rollcast` command: text lines or JSON lines.

Call `setup_logging(settings)` once at start-up. Code logs with the standard `logging` module and
passes structured fields through ``extra`` (never inside the message), so that the JSON format
can emit them as keys that log pipelines index, and the text format appends them as
``key=value``:

    log.info("session started", extra={"event": "started", "session_id": sid, "worker_id": wid})

Prompts are user data: at INFO level log at most `prompt_preview(text)` (the first 80 characters).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, Protocol, TextIO

PROMPT_PREVIEW_CHARS = 80

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
    | {"message", "asctime", "taskName"}
)


class _LogSettings(Protocol):
    log_level: str
    log_format: str


def prompt_preview(text: str, limit: int = PROMPT_PREVIEW_CHARS) -> str:
    """The first ``limit`` characters of a prompt (with an ellipsis when cut), for INFO logs."""
    return text if len(text) <= limit else text[:limit] + "…"


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields a call passed with ``extra=``."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, the extra fields, and exc (if any)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in extra_fields(record).items():
            out.setdefault(key, value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``2024-05-01T12:00:00.123Z INFO rollcast.worker: message key=value ...``"""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line = f"{stamp}.{int(record.msecs):03d}Z {record.levelname} {record.name}: {record.getMessage()}"
        fields = extra_fields(record)
        if fields:
            line += " " + " ".join(f"{k}={_text_value(v)}" for k, v in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _text_value(value: Any) -> str:
    text = str(value)
    return json.dumps(text, ensure_ascii=False) if (not text or any(c in text for c in ' "=\n')) else text


def setup_logging(
    settings: _LogSettings | None = None,
    *,
    level: str | int | None = None,
    fmt: str | None = None,
    stream: TextIO | None = None,
) -> None:
    """Configure the root logger: level and format from ``settings`` (or the explicit arguments).

    Replaces the root handlers (so calling it twice does not duplicate lines) and routes the
    uvicorn loggers through the same handler.
    """
    level = level if level is not None else (settings.log_level if settings is not None else "INFO")
    fmt = fmt if fmt is not None else (settings.log_format if settings is not None else "text")
    if fmt not in ("text", "json"):
        raise ValueError(f"log format must be 'text' or 'json', got {fmt!r}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
