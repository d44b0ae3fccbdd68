# Rollcast image: the API front end and the GPU worker (same image, different command).
# The base ships Python 3.11 with a CUDA build of torch; on a machine without a GPU the same
# image runs the tiny model on the CPU.
ARG BASE_IMAGE=pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    ROLLCAST_HOST=0.0.0.0 ROLLCAST_PORT=8000 ROLLCAST_LOG_FORMAT=json

RUN apt-get update \
 && apt-get install -y --no-install-recommends curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 rollcast

WORKDIR /app
COPY pyproject.toml README.md ./
COPY engine ./engine
COPY server ./server
COPY clients ./clients
# torch comes from the base image; everything else from pyproject.toml
RUN pip install . && python -c "import engine, server"

USER rollcast
EXPOSE 8000 9100
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
  CMD curl -fsS "http://127.0.0.1:${ROLLCAST_PORT}/healthz" || exit 1
CMD ["rollcast", "api"]
