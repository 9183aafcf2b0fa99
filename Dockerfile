# The service image, for machines with a registry. One image runs both processes:
#   docker build -t shap-chaos .
#   docker run shap-chaos                                  -> shap-worker (the default CMD)
#   docker run -p 8000:8000 shap-chaos shap-api            -> the HTTP API on 0.0.0.0:8000
# Both need REDIS_URL. Without a registry (no `docker pull python:3.11-slim`), build offline
# instead: `harness images build --offline` (see docs/DOCKER.md).
#
# Legacy builder and BuildKit both work; no `# syntax=` line, so nothing else is pulled.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# Dependencies first, from pyproject.toml alone: a code change does not reinstall numpy and shap.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt
COPY README.md ./
COPY rq_recovery ./rq_recovery
COPY shap_service ./shap_service
COPY harness ./harness
RUN pip install --no-deps . && rm -rf /src

RUN useradd --create-home --uid 10001 --user-group app
USER app
WORKDIR /home/app
# shap-api binds $HOST (default 127.0.0.1, unreachable from outside a container).
ENV HOST=0.0.0.0 PORT=8000
EXPOSE 8000
CMD ["shap-worker"]
