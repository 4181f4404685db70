"""Scrubbing of secrets from text that leaves a backend: error messages and log records.

A secret is the value of any environment variable whose name contains KEY,
TOKEN, SECRET or PASSWORD (values shorter than :data:`MIN_SECRET_LENGTH` are
left alone: they are flags, not keys), anything that looks like an API key
(``sk-...``), a bearer token or a ``key=`` URL parameter, and any extra value
the caller names.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping

MASK = "***"
SECRET_NAME_PARTS = ("KEY", "TOKEN", "SECRET", "PASSWORD")
MIN_SECRET_LENGTH = 8

_PATTERNS = (
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{4,}"), "sk-" + MASK),
    (re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=\-]+", re.IGNORECASE), r"\1 " + MASK),
    (re.compile(r"([?&](?:api[_-]?)?key=)[^&\s'\"]+", re.IGNORECASE), r"\1" + MASK),
)


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """The values of secret-looking environment variables, longest first."""
    env = os.environ if environ is None else environ
    found = {
        value
        for name, value in env.items()
        if len(value) >= MIN_SECRET_LENGTH
        and any(part in name.upper() for part in SECRET_NAME_PARTS)
    }
    return sorted(found, key=len, reverse=True)


def redact(text: str, extra: Iterable[str] = ()) -> str:
    """``text`` with every secret replaced by ``***``."""
    values = [v for v in extra if v] + secret_values()
    for value in sorted(values, key=len, reverse=True):
        if value in text:
            text = text.replace(value, MASK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that scrubs the message, arguments and traceback of each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_FILTER = RedactingFilter()


def install_log_redaction(logger_names: Iterable[str]) -> None:
    """Add the redacting filter to these loggers (once each)."""
    for name in logger_names:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
