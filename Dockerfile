# The tkonto worker image. Build: docker build -t tkonto-worker .
# Run: docker compose up (see docs/operations.md); the container runs `tkonto worker`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# The code, then the install: setup.py builds the Avro codec in C (streams/avro_native.py)
# and compiles the modules of the per-event path with Cython (setup.py, COMPILED), from the
# code itself, so a code change reinstalls (pinned by requirements.lock); gcc only for the
# build. The install is editable on purpose: streams/codec.py reads the schemas from the
# repository root (/app/schemas), next to the streams package.
COPY pyproject.toml requirements.lock README.md setup.py ./
COPY streams/ streams/
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && pip install -c requirements.lock -e . \
    && apt-get purge -y gcc libc6-dev && apt-get autoremove -y && rm -rf /var/lib/apt/lists/*

COPY schemas/ schemas/
COPY ops/payers.example.csv ops/payers.example.csv

RUN useradd --system --uid 10001 --home-dir /app tkonto \
    && mkdir -p /var/lib/tkonto \
    && chown tkonto /var/lib/tkonto
USER tkonto

ENV TKONTO_WEB_HOST=0.0.0.0 \
    TKONTO_WEB_PORT=6066 \
    TKONTO_DATA_DIR=/var/lib/tkonto
VOLUME /var/lib/tkonto
EXPOSE 6066

HEALTHCHECK --interval=10s --timeout=3s --start-period=60s \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/ready' % os.environ.get('TKONTO_WEB_PORT', '6066'), timeout=2)" || exit 1

CMD ["tkonto", "worker"]
