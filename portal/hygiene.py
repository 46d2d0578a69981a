"""Hostile input refused at one place, before any view reads it, and logs that cannot be
forged.

- Request bodies over MAX_REQUEST_BYTES are refused with 413 before they are read (Werkzeug
  checks Content-Length); one without a length (chunked) is read up to the limit, no
  further, and refused if it reaches it. Stripe's events are far below it, and no form or API
  body comes near it.
- Control characters (NUL and the other C0 and C1 codes but tab, line feed and carriage
  return) in the path, the query, a form or a JSON body are a 400, for every route but the
  Stripe webhook, whose signed body is stored as Stripe sent it.
- Log lines escape control characters in their message (`\\n` as `\\\\n`): a value a user
  typed (an e-mail, a note, a path or a User-Agent in gunicorn's access log) cannot forge a
  second line or send escape sequences to a terminal.
"""

from __future__ import annotations

import copy
import json
import logging
import re
from typing import Any

from flask import Flask, request
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge

MAX_REQUEST_BYTES = 1024 * 1024  # 1 MiB; the proxy in front should refuse more too
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# C0 controls but tab, LF and CR; DEL; C1 controls.
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# In a log line, line breaks too (and the Unicode line and paragraph separators).
LOG_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# Routes whose body is taken as it is (Stripe signs it; it is stored, never rendered).
RAW_BODY_ENDPOINTS = frozenset({"api.stripe_webhook"})


class ControlCharacters(BadRequest):
    description = "The request contains control characters, which no field accepts."


def _has_control(value: Any) -> bool:
    """Whether a string in ``value`` (a JSON document, a form) has a control character; no
    recursion, so a deep document cannot exhaust the stack."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if CONTROL.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _refuse_long_stream() -> None:
    """A body without Content-Length (chunked): Werkzeug stops reading it at the limit but
    hands on what it read, and the view would answer a truncated body. One that reaches the
    limit is a 413, as one with a length would be."""
    if request.content_length is not None or not request.environ.get("wsgi.input_terminated"):
        return
    if len(request.get_data(cache=True)) >= MAX_REQUEST_BYTES:
        raise RequestEntityTooLarge()


def check_request() -> None:
    """Refuse a request with a body over the limit, or that carries control characters
    anywhere a view could read them."""
    if request.method in BODY_METHODS:
        _refuse_long_stream()
    if request.endpoint in RAW_BODY_ENDPOINTS:
        return
    if CONTROL.search(request.path) or _has_control(request.args.to_dict(flat=False)):
        raise ControlCharacters()
    if request.method in BODY_METHODS:
        if request.mimetype == "application/json":
            try:
                body = json.loads(request.get_data(cache=True))
            except (ValueError, RecursionError):
                return  # not JSON: the view answers that
            if _has_control(body):
                raise ControlCharacters()
        elif _has_control(request.form.to_dict(flat=False)):
            raise ControlCharacters()


def escape_controls(text: str) -> str:
    """A log message's control characters as visible escapes (a newline as \\n)."""
    return LOG_CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def _escaping(factory):
    """A log record factory whose records have their message's control characters escaped,
    whichever handler writes them (a traceback, kept apart from the message, keeps its
    lines)."""

    def make(*args, **kwargs) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        if isinstance(record.msg, str):
            record.msg = escape_controls(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(escape_controls(a) if isinstance(a, str) else a
                                for a in record.args)
        elif isinstance(record.args, dict):  # "%(name)s" formats: gunicorn's access log
            escaped = copy.copy(record.args)  # its own class (gunicorn's SafeAtoms) kept
            for key, value in record.args.items():
                if isinstance(value, str):
                    escaped[key] = escape_controls(value)
            record.args = escaped
        return record

    make.escapes_controls = True
    return make


def init_app(app: Flask) -> None:
    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    app.before_request(check_request)
    factory = logging.getLogRecordFactory()
    if not getattr(factory, "escapes_controls", False):
        logging.setLogRecordFactory(_escaping(factory))
