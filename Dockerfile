# PEng4NN image: the API (default command) and the workers (`python -m worker`).
#
#   CPU:  docker build -t peng4nn .
#   CUDA: docker build -t peng4nn:cuda \
#           --build-arg BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04 \
#           --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DEBIAN_FRONTEND=noninteractive

# CUDA base images ship without Python 3.11; python:3.11 images skip this step.
RUN if ! command -v python3.11 >/dev/null 2>&1; then \
        apt-get update \
        && apt-get install -y --no-install-recommends software-properties-common \
        && add-apt-repository -y ppa:deadsnakes/ppa \
        && apt-get update \
        && apt-get install -y --no-install-recommends python3.11 python3.11-venv \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && python3.11 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /app
# torch first, from the index that matches the base image (CPU-only or CUDA wheels).
RUN pip install --index-url "${TORCH_INDEX_URL}" --extra-index-url https://pypi.org/simple \
        torch==2.14.1 torchvision==0.29.1
COPY pyproject.toml README.md ./
COPY peng4nn ./peng4nn
COPY service ./service
COPY worker ./worker
RUN pip install . \
    && useradd --create-home --uid 10001 peng4nn \
    && mkdir -p /data && chown peng4nn /data

USER peng4nn
ENV PENG4NN_DATA=/data \
    PENG4NN_DATA_ROOT=/data
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD python -c "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=3).status != 200)"
# Open event streams get 10 s when the container stops (SIGTERM), then uvicorn closes them; clients resume
# with Last-Event-ID. Without the timeout uvicorn would wait for every stream to end (hours with long jobs).
CMD ["uvicorn", "--factory", "peng4nn_service.app:create_app", "--host", "0.0.0.0", "--port", "8000", "--workers", "2", \
     "--timeout-graceful-shutdown", "10"]
