# The model monitor: `monitor run`, `monitor simulate`, `monitor check-config`, ...
# docker build -t kafka-model-monitor .

# Base images and build tools are pinned to exact versions: the Rust the decoder is tested with
# (cargo 1.95.0), the Python the suite runs on (3.11.7), and a fixed maturin. Python packages
# come from constraints.txt: the versions the test suite ran with (scripts/update_constraints.py).

# The compiled decoder and KS kernel (native/, Rust): one abi3 wheel for CPython >= 3.11.
FROM rust:1.95.0-slim-bookworm AS native
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/maturin \
    && /opt/maturin/bin/pip install --no-cache-dir "maturin==1.16.0"
COPY native /src/native
RUN /opt/maturin/bin/maturin build --release --manifest-path /src/native/Cargo.toml -o /wheels

# The web UI's chart library (uPlot) from the npm registry; not committed to the repo.
# The version is monitor/ui/assets.py's UPLOT_VERSION (a test keeps them equal).
FROM node:20.20.2-bookworm-slim AS ui
ARG UPLOT_VERSION=1.6.32
RUN mkdir -p /vendor /tmp/npm && cd /tmp/npm \
    && npm pack --silent "uplot@${UPLOT_VERSION}" \
    && tar -xzf "uplot-${UPLOT_VERSION}.tgz" \
    && cp package/dist/uPlot.iife.min.js package/dist/uPlot.min.css /vendor/ \
    && cp package/LICENSE /vendor/LICENSE.uPlot \
    && echo "${UPLOT_VERSION}" > /vendor/VERSION

FROM python:3.11.7-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md constraints.txt ./
COPY monitor ./monitor
COPY --from=ui /vendor ./monitor/ui/vendor
COPY --from=native /wheels /tmp/wheels
RUN pip install --constraint constraints.txt . /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels \
    && useradd --system --uid 10001 --create-home --home-dir /home/monitor monitor \
    && mkdir -p /data /etc/monitor \
    && chown monitor:monitor /data

COPY config/compose.yaml /etc/monitor/compose.yaml

# Named volumes mounted at /data inherit this ownership on first use.
VOLUME ["/data"]
USER monitor:monitor
# The port http.port is configured to: config/compose.yaml reads it from this variable, and
# the healthcheck asks the same port (set MONITOR_HTTP_PORT, not the file, to change it).
ENV MONITOR_HTTP_PORT=9108
EXPOSE 9108

# /healthz answers 503 when the consume loop or the broker probe is stalled (urlopen raises).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('MONITOR_HTTP_PORT', '9108'), timeout=4)"]

ENTRYPOINT ["monitor"]
CMD ["run", "--config", "/etc/monitor/compose.yaml"]
