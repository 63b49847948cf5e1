# The model monitor: `monitor run`, `monitor simulate`, `monitor check-config`, ...
# docker build -t kafka-model-monitor .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NUMBA_CACHE_DIR=/home/monitor/.cache/numba

WORKDIR /app
COPY pyproject.toml README.md ./
COPY monitor ./monitor
RUN pip install . \
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
