# syntax=docker/dockerfile:1
# Build stage: install the relay and its dependencies into a virtual environment.
FROM python:3.11-slim AS build
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# The pinned, hashed dependency set first (`make lock` writes it), then the relay itself alone.
COPY requirements.lock ./
RUN pip install --require-hashes --no-deps -r requirements.lock
COPY pyproject.toml README.md ./
COPY app ./app
RUN pip install --no-deps .

# Final stage: no compilers, a non-root user, config only from the environment.
FROM python:3.11-slim
RUN useradd --create-home --uid 10001 relay && mkdir -p /app/data && chown 10001:10001 /app/data
COPY --from=build /opt/venv /opt/venv
COPY mappings /app/mappings
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 RELAY_MAPPINGS_DIR=/app/mappings
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status != 200)"]
CMD ["aep-relay", "serve", "--host", "0.0.0.0", "--port", "8080"]
