# ShopSphere Payments Portal: one image for every process (DESIGN.md section 2).
#
#   web        (default CMD)  gunicorn wsgi:app on $PORT (3006)
#   webhooks   gunicorn wsgi_webhooks:app: Stripe's deliveries in a pool of their own (3007)
#   worker     flask --app wsgi worker
#   scheduler  rq cron portal.cron_config   (Redis from --url or RQ_REDIS_URL)
#   migrations flask --app wsgi db upgrade
#
# docker-compose.yml starts all of them. Configuration is the environment only (portal/config.py;
# .env.example lists every variable). The image defaults to PORTAL_ENV=production, so it refuses
# to start without SECRET_KEY, JWT_SECRET and the Stripe keys; htmx comes from the pinned CDN URL
# with its SRI hash, so static/vendor/ is not in the image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /app

# Runtime dependencies only (never requirements-dev.txt), in their own layer so a code change
# does not reinstall them. Every pin ships manylinux wheels (psycopg[binary] included), so the
# slim image needs no compiler.
# WeasyPrint (invoices and credit notes as PDF) needs Pango and a font from Debian.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpango-1.0-0 libpangoft2-1.0-0 \
       fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt

# An unprivileged user. The code stays root-owned, so the running app cannot change it; only
# instance/ (where an embedded SQLite database would live) is writable.
RUN groupadd --system --gid 10001 portal \
    && useradd --system --uid 10001 --gid portal --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin portal \
    && mkdir -p /app/instance \
    && chown portal:portal /app/instance

COPY wsgi.py wsgi_webhooks.py gunicorn.conf.py ./
COPY portal/ portal/
COPY templates/ templates/
COPY static/ static/
COPY migrations/ migrations/
# Byte-compile now: the app user cannot write __pycache__ next to root-owned code.
RUN python -m compileall -q portal migrations wsgi.py wsgi_webhooks.py

ENV PORTAL_ENV=production \
    FLASK_APP=wsgi

# Numeric so that runtimes enforcing "run as non-root" (runAsNonRoot) can verify it.
USER 10001:10001

EXPOSE 3006 3007

# Only web and webhooks answer (each on its $PORT); compose disables this check for worker, cron
# and migrate.
# No curl in slim: python's urllib, without any HTTP(S)_PROXY from the environment.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:%s/healthz' % (os.environ.get('PORT') or '3006'), timeout=4)"]

# sh -c so that PORT and WEB_CONCURRENCY expand at start; exec so that gunicorn replaces sh and
# gets SIGTERM for a graceful shutdown. --no-control-socket: gunicorn >= 25.1 otherwise opens a
# control socket under $HOME/.gunicorn/, which is read-only here (an ERROR line at every start);
# containers are scaled and restarted by the orchestrator, not through gunicornc.
CMD ["sh", "-c", "exec gunicorn --bind 0.0.0.0:${PORT:-3006} --workers ${WEB_CONCURRENCY:-2} wsgi:app"]
