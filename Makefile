# The two commands: `make run` (demo on SQLite + Stripe sandbox) and `make test` (everything).
SHELL := /bin/bash
PY := .venv/bin/python
HTMX_VERSION := 2.0.11
HTMX_SRI := sha384-2OatzQy1H+Zd/IIrjr1TcuDGqLXeHhbooAyJY1KdQMKnr4LZ22k31GBLdYKHmVjg
# The API reference's viewer; the same pins are in portal/api/views.py (a test compares them).
SWAGGER_UI_VERSION := 5.35.0
SWAGGER_UI_JS_SRI := sha384-gjRm0bEPMeTmMh5jT2cHccIwCUZSTd8YC+j0d0sXw0MdGEfScduGpSyF3ZSSLkX9
SWAGGER_UI_CSS_SRI := sha384-WlYgdmXYOOBWL5apwjDEZwN+U3HmXSSu5R6V5aGxEcf7z+KuRNwBhoxKVN1i3D5I
SWAGGER_UI := static/vendor/swagger-ui-$(SWAGGER_UI_VERSION)
AXE_VERSION := 4.14.1
AXE_SRI := sha384-xt1SFg49QaDwsyt0Xfs2XAyBtYPClXl3X2q5OOLeGAUmq9jZTYIMdztpF99WdhiH
export FLASK_APP := wsgi

.PHONY: run test test-live lint unit integration e2e bench install htmx swagger-ui axe screenshots clean

install: .venv/.installed static/vendor/htmx.min.js $(SWAGGER_UI)/swagger-ui-bundle.js \
  tests/vendor/axe.min.js

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

swagger-ui: $(SWAGGER_UI)/swagger-ui-bundle.js

# Swagger UI for /api/payments/docs, served from our own files (README, "Dependencies"): the
# pinned npm package, its script and stylesheet each checked against its SRI hash (the page
# loads them with the same hashes), the CSS copied first so the script's presence means both.
# The directory names the version, so a new pin fetches again. `npm pack` runs no install
# script: the package's usage-analytics dependency is never installed, nor anything else.
$(SWAGGER_UI)/swagger-ui-bundle.js:
	mkdir -p $(SWAGGER_UI)
	tmp=$$(mktemp -d) && cd $$tmp \
	  && npm pack --silent swagger-ui-dist@$(SWAGGER_UI_VERSION) >/dev/null \
	  && tar xzf swagger-ui-dist-$(SWAGGER_UI_VERSION).tgz \
	  && test "sha384-$$(openssl dgst -sha384 -binary package/swagger-ui-bundle.js | openssl base64 -A)" = "$(SWAGGER_UI_JS_SRI)" \
	  && test "sha384-$$(openssl dgst -sha384 -binary package/swagger-ui.css | openssl base64 -A)" = "$(SWAGGER_UI_CSS_SRI)" \
	  && cp package/LICENSE package/NOTICE package/swagger-ui.css $(CURDIR)/$(SWAGGER_UI)/ \
	  && cp package/swagger-ui-bundle.js $(CURDIR)/$@ && rm -rf $$tmp

axe: tests/vendor/axe.min.js

# axe-core, which tests/e2e/test_accessibility.py injects into every page it checks; pinned
# and checked like htmx. Under tests/: the portal never serves it.
tests/vendor/axe.min.js:
	mkdir -p tests/vendor
	tmp=$$(mktemp -d) && cd $$tmp && npm pack --silent axe-core@$(AXE_VERSION) >/dev/null \
	  && tar xzf axe-core-$(AXE_VERSION).tgz \
	  && test "sha384-$$(openssl dgst -sha384 -binary package/axe.min.js | openssl base64 -A)" = "$(AXE_SRI)" \
	  && cp package/axe.min.js $(CURDIR)/$@ && rm -rf $$tmp

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

# PNGs of every page the accessibility test visits, at 390 and 1280 px, into docs/screenshots/
# (needs what `make e2e` needs: PostgreSQL, Redis, Chromium).
screenshots: install
	$(PY) scripts/screenshots.py

bench: install
	$(PY) bench/history.py
	$(PY) bench/admin_search.py
	$(PY) bench/analytics.py
	$(PY) bench/documents.py
	$(PY) bench/api_latency.py
	$(PY) bench/payouts.py
	$(PY) bench/webhooks.py
	$(PY) bench/webhook_isolation.py

clean:
	rm -rf .venv static/vendor tests/vendor instance .pytest_cache .ruff_cache
