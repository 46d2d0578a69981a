# The two commands: `make run` (demo on SQLite + Stripe sandbox) and `make test` (everything).
SHELL := /bin/bash
PY := .venv/bin/python
HTMX_VERSION := 2.0.11
HTMX_SRI := sha384-2OatzQy1H+Zd/IIrjr1TcuDGqLXeHhbooAyJY1KdQMKnr4LZ22k31GBLdYKHmVjg
export FLASK_APP := wsgi

.PHONY: run test test-live lint unit integration e2e bench install htmx clean

install: .venv/.installed static/vendor/htmx.min.js

.venv/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

htmx: static/vendor/htmx.min.js

# The same pinned htmx the production pages load from the CDN, checked against its SRI hash.
static/vendor/htmx.min.js:
	mkdir -p static/vendor
	tmp=$$(mktemp -d) && cd $$tmp && npm pack --silent htmx.org@$(HTMX_VERSION) >/dev/null \
	  && tar xzf htmx.org-$(HTMX_VERSION).tgz \
	  && test "sha384-$$(openssl dgst -sha384 -binary package/dist/htmx.min.js | openssl base64 -A)" = "$(HTMX_SRI)" \
	  && cp package/dist/htmx.min.js $(CURDIR)/$@ && rm -rf $$tmp

run: install
	@scripts/run-dev.sh

# bandit: the code that runs in the portal and its sandbox (benches and tests assert on
# purpose); every accepted finding is marked `# nosec <id> - why` where it is.
# lint-imports: the feature packages depend one way (the contract is in pyproject.toml).
# xenon: no function of the portal more complex than radon's grade C.
lint: install
	.venv/bin/ruff check .
	.venv/bin/bandit --quiet --recursive portal stripe_sandbox scripts wsgi.py gunicorn.conf.py
	.venv/bin/lint-imports --no-cache
	.venv/bin/xenon --max-absolute C portal

test: install lint
	$(PY) -m pytest

# The gateway against real Stripe test mode (network; never in CI). A live key is refused
# before anything is sent.
test-live: install
	@case "$${STRIPE_SECRET_KEY:-}" in \
	  sk_test_*) ;; \
	  sk_live_*|rk_live_*) echo "make test-live: STRIPE_SECRET_KEY is a live key; use sk_test_..." >&2; exit 2 ;; \
	  *) echo "make test-live needs STRIPE_SECRET_KEY=sk_test_... (and the network)" >&2; exit 2 ;; \
	esac
	$(PY) -m pytest -m stripe_live tests/live

unit: install
	$(PY) -m pytest tests/unit

integration: install
	$(PY) -m pytest tests/integration tests/sandbox

e2e: install
	$(PY) -m pytest tests/e2e

bench: install
	$(PY) bench/history.py
	$(PY) bench/admin_search.py
	$(PY) bench/analytics.py
	$(PY) bench/api_latency.py
	$(PY) bench/payouts.py
	$(PY) bench/webhooks.py
	$(PY) bench/webhook_isolation.py

clean:
	rm -rf .venv static/vendor instance .pytest_cache .ruff_cache
