# The aipulse worker and CLI image (used by docker-compose.yml).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY collectors collectors
COPY stream stream
COPY services services
COPY dashboards dashboards
COPY alerts alerts
COPY cli cli
# The server extra: the worker and the `aipulse` command (a plain install is the SDK alone).
RUN pip install --no-cache-dir ".[server]"
ENV AIPULSE_HOME=/var/lib/aipulse
CMD ["aipulse", "worker"]
