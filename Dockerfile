# PEng4NN images, two targets from one file:
#
#   api     the HTTP API only: the service extra, no torch (it enqueues jobs by name and never trains)
#   worker  one RQ worker process: the service and train extras, torch from TORCH_INDEX_URL
#
#   docker build --target api -t peng4nn-api .
#   docker build --target worker -t peng4nn-worker:cuda .                     # CUDA wheels (they bundle CUDA)
#   docker build --target worker -t peng4nn-worker:cpu \
#       --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu .    # CPU-only torch
#
# Both start from python:3.11-slim: the CUDA torch wheels carry their own CUDA libraries, so a CUDA
# base image would only duplicate them; the GPU driver comes from the host (NVIDIA container toolkit).
# Versions come from constraints.txt, the ones the repository is tested with.
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN useradd --create-home --uid 10001 peng4nn
WORKDIR /app
COPY pyproject.toml README.md LICENSE constraints.txt ./
COPY peng4nn ./peng4nn
COPY service ./service
COPY worker ./worker
COPY store ./store

FROM base AS api
RUN pip install -c constraints.txt ".[service]"
USER peng4nn
EXPOSE 8000
# This process's own liveness (/livez): the service's readiness (/healthz) also needs Redis and live
# workers, and restarting the API would fix neither.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD python -c "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/livez', timeout=3).status != 200)"
# Open event streams get 10 s when the container stops (SIGTERM), then uvicorn closes them; clients resume
# with Last-Event-ID. Without the timeout uvicorn would wait for every stream to end (hours with long jobs).
CMD ["uvicorn", "--factory", "peng4nn_service.app:create_app", "--host", "0.0.0.0", "--port", "8000", \
     "--workers", "2", "--timeout-graceful-shutdown", "10"]

FROM base AS worker
# torch from the index that matches the target (PyPI's CUDA wheels by default, or the CPU-only index).
ARG TORCH_INDEX_URL=https://pypi.org/simple
RUN pip install -c constraints.txt --index-url "${TORCH_INDEX_URL}" --extra-index-url https://pypi.org/simple \
        torch torchvision \
    && pip install -c constraints.txt ".[service,train]" \
    && mkdir -p /data && chown peng4nn /data
USER peng4nn
ENV PENG4NN_DATA=/data \
    PENG4NN_DATA_ROOT=/data \
    PENG4NN_WORKER_HEARTBEAT_FILE=/tmp/peng4nn-worker.beat
VOLUME ["/data"]
# This worker process's own heartbeat (touched whenever it reaches Redis), not a ping of Redis.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-m", "peng4nn_worker.health"]
# -P: the working directory is never searched for modules.
CMD ["python", "-P", "-m", "peng4nn_worker", "--device", "cuda"]
