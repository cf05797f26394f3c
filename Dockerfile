# The retention worker.  Built by docker-compose.yml; runs `retention worker`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# Same pins as CI: constraints.txt fixes every resolved version.  The package
# alone, without the [local] extra: the worker runs no Kafka or redis-server of its
# own, so the image carries no JDK (README "Docker").
COPY pyproject.toml constraints.txt README.md ./
COPY streams/ streams/
COPY agents/ agents/
COPY schemas/ schemas/
RUN pip install -c constraints.txt . \
    && useradd --system --create-home --uid 10001 retention \
    && mkdir -p /data \
    && chown retention /data

USER retention
ENV RETENTION_DATA_DIR=/data \
    RETENTION_WEB_HOST=0.0.0.0
VOLUME ["/data"]
EXPOSE 6066
CMD ["retention", "worker"]
