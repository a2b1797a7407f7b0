# memproxy — the proxy with its embedded defaults (local Gemma model, embedded Chroma).
# Build: docker build -t memproxy .   Run: docker run -p 8000:8000 -v memproxy-data:/data memproxy
# Several replicas over a Chroma server: docker-compose.yaml and docs/deployment.md.
FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends build-essential cmake \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY proxy ./proxy
COPY memory ./memory
COPY adapters ./adapters
COPY bench ./bench
# torch first, CPU build, so nothing pulls the multi-GB CUDA wheels; llama.cpp
# built for portable x86-64, not the build host's CPU (a native build can crash
# on another CPU, and does on AMX machines).
RUN pip install --no-cache-dir --prefix=/install -c constraints.txt \
        --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0" \
    && CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install --no-cache-dir --prefix=/install -c constraints.txt ".[local]"

FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 memproxy \
    && mkdir /data /keys && chown memproxy /data /keys
COPY --from=build /install /usr/local
USER memproxy
# Listening on all interfaces needs an explicit auth.mode: keys here (create one with
# `docker exec <container> memproxy keys create --kind admin --name root`); set
# MEMPROXY_AUTH__MODE=none to run open behind a gateway that authenticates.
ENV MEMPROXY_HOST=0.0.0.0 \
    MEMPROXY_AUTH__MODE=keys \
    MEMPROXY_PORT=8000 \
    MEMPROXY_DATA_DIR=/data \
    HF_HUB_OFFLINE=1 \
    LITELLM_LOCAL_MODEL_COST_MAP=True \
    ANONYMIZED_TELEMETRY=False
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=60s \
    CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz').status != 200)"
ENTRYPOINT ["memproxy", "serve"]
