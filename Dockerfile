# The model monitor: `monitor run`, `monitor simulate`, `monitor check-config`, ...
# docker build -t kafka-model-monitor .

# The compiled decoder (native/, Rust): one abi3 wheel for CPython >= 3.11.
FROM rust:1-slim-bookworm AS native
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/maturin \
    && /opt/maturin/bin/pip install --no-cache-dir "maturin>=1.5,<2"
COPY native /src/native
RUN /opt/maturin/bin/maturin build --release --manifest-path /src/native/Cargo.toml -o /wheels

# The web UI's chart library (uPlot) from the npm registry; not committed to the repo.
# The version is monitor/ui/assets.py's UPLOT_VERSION (a test keeps them equal).
FROM node:20-bookworm-slim AS ui
ARG UPLOT_VERSION=1.6.32
RUN mkdir -p /vendor /tmp/npm && cd /tmp/npm \
    && npm pack --silent "uplot@${UPLOT_VERSION}" \
    && tar -xzf "uplot-${UPLOT_VERSION}.tgz" \
    && cp package/dist/uPlot.iife.min.js package/dist/uPlot.min.css /vendor/ \
    && cp package/LICENSE /vendor/LICENSE.uPlot \
    && echo "${UPLOT_VERSION}" > /vendor/VERSION

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NUMBA_CACHE_DIR=/home/monitor/.cache/numba

WORKDIR /app
COPY pyproject.toml README.md ./
COPY monitor ./monitor
COPY --from=ui /vendor ./monitor/ui/vendor
COPY --from=native /wheels /tmp/wheels
RUN pip install . /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels \
    && useradd --system --uid 10001 --create-home --home-dir /home/monitor monitor \
    && mkdir -p /data /etc/monitor \
    && chown monitor:monitor /data

COPY config/compose.yaml /etc/monitor/compose.yaml

# Named volumes mounted at /data inherit this ownership on first use.
VOLUME ["/data"]
USER monitor:monitor
EXPOSE 9108

# /healthz answers 503 when the consume loop or the broker probe is stalled (urlopen raises).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9108/healthz', timeout=4)"]

ENTRYPOINT ["monitor"]
CMD ["run", "--config", "/etc/monitor/compose.yaml"]
