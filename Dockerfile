# The aipulse worker and CLI image (used by docker-compose.yml).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY collectors collectors
COPY stream stream
COPY services services
COPY dashboards dashboards
COPY alerts alerts
RUN pip install --no-cache-dir .
ENV AIPULSE_HOME=/var/lib/aipulse
CMD ["python", "-m", "aipulse_stream.worker"]
