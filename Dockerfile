# The aipulse server image: the worker, `aipulse migrate` and the render steps (Alertmanager's
# config, Alertmanager's and Prometheus's basic auth web config) of docker-compose.yml. Two stages: the build stage installs into a virtualenv, the
# final stage is python-slim plus that virtualenv, run as an unprivileged user.
#
# Only what the worker, `aipulse migrate` and the render step import is installed: the
# `server` extra's chDB, matplotlib, rich and the Grafana packages are for the local stack,
# the demo and `aipulse grafana`; the `aipulse` command loads each subcommand lazily, so the
# others never import them. The rule file travels inside the aipulse_alerts package.
# tests/deploy/test_compose.py runs the three commands with the left-out packages made
# unimportable, and checks these names against pyproject.toml.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/aipulse
WORKDIR /src
# .dockerignore keeps tests, docs, caches and local state out of the context.
COPY . .
RUN /opt/aipulse/bin/pip install --no-deps . \
 && /opt/aipulse/bin/pip install \
      "pydantic>=2.6" "kafka-python>=2.1" "genai-prices>=0.0.40" "prometheus-client>=0.20" \
      "faust-streaming==0.15.3" "cramjam>=2.8" "clickhouse-connect>=0.8" "msgspec>=0.22,<0.23" "pyyaml>=6.0" "bcrypt>=4.0" \
 && find /opt/aipulse -name __pycache__ -prune -exec rm -rf {} +

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 aipulse \
 && useradd --system --uid 10001 --gid aipulse --home-dir /var/lib/aipulse --create-home --shell /usr/sbin/nologin aipulse \
 && mkdir -p /etc/aipulse/alertmanager /etc/aipulse/web \
 && chown aipulse:aipulse /etc/aipulse/alertmanager /etc/aipulse/web
COPY --from=build /opt/aipulse /opt/aipulse
ENV PATH=/opt/aipulse/bin:$PATH \
    AIPULSE_HOME=/var/lib/aipulse \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Faust keeps its table data under the working directory: the user's own home.
WORKDIR /var/lib/aipulse
USER 10001:10001
EXPOSE 9464
CMD ["aipulse", "worker"]
