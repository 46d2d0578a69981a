"""LOG_LEVEL: `make run` logs at WARNING (no line per Stripe call or request), and at DEBUG
the Stripe SDK still stays at INFO, since it would log response bodies, client secrets
included."""

from __future__ import annotations

import logging
import runpy

import pytest

import portal
from portal.config import ROOT


@pytest.fixture
def stripe_logger():
    logger = logging.getLogger("stripe")
    before = logger.level
    yield logger
    logger.setLevel(before)


@pytest.mark.parametrize(("level", "sdk"), [("WARNING", logging.WARNING),
                                            ("INFO", logging.INFO),
                                            ("DEBUG", logging.INFO),
                                            ("ERROR", logging.ERROR)])
def test_the_stripe_sdk_logs_at_log_level_and_never_below_info(stripe_logger, level, sdk):
    portal._configure_logging(level)
    assert stripe_logger.getEffectiveLevel() == sdk
    assert not stripe_logger.isEnabledFor(logging.DEBUG)


@pytest.mark.parametrize(("level", "gunicorn", "access_log"), [
    (None, "info", "-"), ("INFO", "info", "-"), ("debug", "debug", "-"),
    ("WARNING", "warning", None), ("ERROR", "error", None), ("LOUD", "info", "-")])
def test_gunicorn_logs_at_log_level_and_its_access_log_only_at_info(monkeypatch, level,
                                                                    gunicorn, access_log):
    if level is None:
        monkeypatch.delenv("LOG_LEVEL", raising=False)
    else:
        monkeypatch.setenv("LOG_LEVEL", level)
    settings = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert (settings["loglevel"], settings["accesslog"]) == (gunicorn, access_log)
