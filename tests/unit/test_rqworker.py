"""The guard around PortalWorker: it runs only on the rq its copied methods were written
against; another rq stops `flask worker` with what to do, unless PORTAL_RQ_WORKER=rq asks
for RQ's own SimpleWorker. No Redis needed: the guard runs before any connection is made."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import rq
from redis import Redis
from rq import SimpleWorker, Worker

from portal import create_app, rqworker
from portal.config import Config
from portal.rqworker import RQ_VERSION, PortalWorker, RQVersionError, check_rq, worker_class
from portal.worker import worker_command
from tests.conftest import portal_env

OTHER = "2.13.0"


@pytest.fixture
def other_rq(monkeypatch):
    """An rq other than the one PortalWorker was written against."""
    monkeypatch.setattr(rq, "__version__", OTHER)


def test_the_pinned_rq_is_the_one_the_worker_was_written_for():
    requirements = (Path(__file__).parents[2] / "requirements.txt").read_text()
    assert re.search(rf"^rq=={re.escape(RQ_VERSION)}$", requirements, re.M)
    assert rq.__version__ == RQ_VERSION
    check_rq()  # no error
    assert worker_class(environ={}) is PortalWorker
    assert worker_class(environ={"PORTAL_RQ_WORKER": "portal"}) is PortalWorker


def test_another_rq_is_refused_naming_both_versions_and_what_to_do(other_rq):
    with pytest.raises(RQVersionError) as refused:
        worker_class(environ={})
    message = str(refused.value)
    assert f"rq {OTHER} is installed" in message
    assert f"methods copied from rq {RQ_VERSION}" in message
    for what_to_do in ("PORTAL_RQ_WORKER=rq", "tests/integration/test_worker.py",
                       "bench/webhooks.py", f"RQ_VERSION to '{OTHER}'", "requirements.txt"):
        assert what_to_do in message


def test_portal_worker_itself_refuses_another_rq(other_rq):
    with pytest.raises(RQVersionError, match=f"rq {OTHER} is installed"):
        PortalWorker(["default"], connection=Redis())  # never connects: refused first


def test_the_opt_out_selects_rqs_own_worker_on_any_rq(other_rq):
    for value in ("rq", " RQ "):
        chosen = worker_class(environ={"PORTAL_RQ_WORKER": value})
        assert chosen is SimpleWorker and not issubclass(chosen, PortalWorker)


def test_the_opt_out_is_read_from_the_environment(other_rq, monkeypatch):
    monkeypatch.setenv("PORTAL_RQ_WORKER", "rq")
    assert worker_class() is SimpleWorker
    monkeypatch.delenv("PORTAL_RQ_WORKER")
    with pytest.raises(RQVersionError):
        worker_class()


def test_fork_is_rqs_own_forking_worker_on_any_rq(other_rq):
    assert worker_class(fork=True, environ={}) is Worker


def test_an_unknown_choice_is_refused():
    with pytest.raises(ValueError, match="PORTAL_RQ_WORKER='fast': expected one of portal, rq"):
        worker_class(environ={"PORTAL_RQ_WORKER": "fast"})


def test_a_missing_private_name_is_refused(monkeypatch):
    monkeypatch.setattr(rqworker, "_job_stack", None)
    with pytest.raises(RQVersionError, match=r"no rq\.job\._job_stack") as refused:
        worker_class(environ={})
    assert "PORTAL_RQ_WORKER=rq" in str(refused.value)


def test_flask_worker_stops_with_the_message_on_another_rq(other_rq, tmp_path, monkeypatch):
    """Before it looks at Redis or the database: the message is all it prints."""
    monkeypatch.delenv("PORTAL_RQ_WORKER", raising=False)
    app = create_app(Config.from_env(portal_env(f"sqlite:///{tmp_path / 'p.sqlite'}",
                                                "http://127.0.0.1:9")))
    result = app.test_cli_runner().invoke(worker_command, ["--burst"])
    assert result.exit_code == 1
    assert f"Error: rq {OTHER} is installed" in result.output
    assert "PORTAL_RQ_WORKER=rq" in result.output
