"""Every Stripe request the portal makes in a test run, checked against the contract.

`install()` wraps the SDK's request method (stripe._api_requestor._APIRequestor.request, the
one place every call of the SDK passes) so that each request sent from
``portal/stripe_gateway.py`` is checked against its endpoint's parameter class
(stripe_sandbox/contract.py) before it leaves. A violation names the parameter, the endpoint,
the gateway function and the portal line that called it; in the test process it raises at
once, in a server or worker the tests started it is only recorded (the request goes on, and
the sandbox refuses it as Stripe would). Tests never call this in production code: the
conftest installs it in the pytest process, and servers and workers the tests start run under
``python -m tests.stripe_contract <module> <args>`` (see ``command``).

Findings go to files in ``$STRIPE_CONTRACT_DIR`` (set by the conftest for the whole session and
inherited by every process the tests start, the sandboxes included):
``requests-<pid>.jsonl`` (each distinct request signature a process saw, once),
``objects-<pid>.jsonl`` (each distinct response object shape a sandbox checked, once) and
``violations-<pid>.jsonl``. The conftest fails the test during which a violation was written
and prints the totals at the end of the session.
"""

from __future__ import annotations

import os
import runpy
import sys
import traceback
from pathlib import Path
from urllib.parse import urlsplit

from stripe_sandbox import contract

ROOT = Path(__file__).resolve().parent.parent
GATEWAY = str(ROOT / "portal" / "stripe_gateway.py")
VENV = str(ROOT / ".venv")


class ContractViolation(AssertionError):
    """A request of the portal that the pinned Stripe API version would refuse."""


def _callers() -> tuple[str, str] | None:
    """(gateway function, where: its line and the project's line that called it) when the
    current request comes from portal/stripe_gateway.py; None for anyone else's (a test
    acting "in Stripe")."""
    frames = traceback.extract_stack()
    for i in range(len(frames) - 1, -1, -1):
        if frames[i].filename == GATEWAY:
            j = i
            while j > 0 and frames[j - 1].filename == GATEWAY:
                j -= 1  # the gateway's public function, entered from outside it
            outer = next((f for f in reversed(frames[:j]) if f.filename.startswith(str(ROOT))
                          and not f.filename.startswith(VENV)), None)
            where = f"{_rel(frames[j].filename)}:{frames[j].lineno}"
            called = f" called from {_rel(outer.filename)}:{outer.lineno}" if outer else ""
            return frames[j].name, f"{where} ({frames[j].name}){called}"
    return None


def _rel(path: str) -> str:
    return os.path.relpath(path, ROOT)


def install(*, raise_violations: bool) -> contract.Recorder:
    """Check every request the portal's gateway sends, from now on, in this process."""
    from stripe._api_requestor import _APIRequestor

    recorder = contract.Recorder()
    original = getattr(_APIRequestor.request, "__wrapped__", _APIRequestor.request)

    def request(self, method, url, params=None, options=None, **kwargs):
        callers = _callers()
        if callers is not None:
            function, line = callers
            check = contract.check_request(method, urlsplit(url).path, params)
            recorder.write("requests", {"signature": list(check.signature), "caller": function},
                           key=check.signature)
            if check.violations:
                endpoint = check.endpoint
                route = f"{endpoint.method} {endpoint.path} ({endpoint.params})" if endpoint \
                    else f"{method.upper()} {urlsplit(url).path}"
                message = (f"Stripe contract (API {contract.API_VERSION}): {route} refuses "
                           + "; ".join(map(str, check.violations)) + f" - sent by {line}")
                recorder.write("violations", {"message": message})
                if raise_violations:
                    raise ContractViolation(message)
        return original(self, method, url, params, options, **kwargs)

    request.__wrapped__ = original
    _APIRequestor.request = request
    return recorder


def command(module: str, *args: str) -> list[str]:
    """argv running ``python -m <module> <args>`` with the contract check installed."""
    return [sys.executable, "-m", "tests.stripe_contract", module, *args]


if __name__ == "__main__":
    # python -m tests.stripe_contract gunicorn ... | flask --app wsgi worker
    install(raise_violations=False)
    module = sys.argv[1]
    sys.argv = [module, *sys.argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
