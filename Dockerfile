# syntax=docker/dockerfile:1
# anemone: a KServe v2 / Triton-protocol inference server.
#
#   docker build -t anemone:dev .
#   docker run --rm -p 8000:8000 -p 8001:8001 anemone:dev
#   docker run --rm -p 8000:8000 -e AWS_ACCESS_KEY_ID=... -e AWS_SECRET_ACCESS_KEY=... \
#       anemone:dev --model-repository s3://bucket/models --host 0.0.0.0
#
# Three stages: the Rust build, the ONNX Runtime library (from the same pinned
# PyPI wheel as scripts/install-onnxruntime.sh), and a small runtime image that
# runs as a non-root user. See docs/DEPLOY.md.

# --- 1. build ---------------------------------------------------------------
FROM rust:1.92-bookworm AS build
WORKDIR /src
# protoc is not needed (protox compiles the .proto files in Rust).
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin anemone \
    && install -D -m 0755 target/release/anemone /out/anemone

# --- 2. ONNX Runtime --------------------------------------------------------
FROM python:3.12-slim-bookworm AS onnxruntime
WORKDIR /src
COPY scripts/install-onnxruntime.sh scripts/
# The wheel's shared library only (pip download --no-deps; nothing is installed).
RUN scripts/install-onnxruntime.sh --required \
    && install -D -m 0644 third_party/onnxruntime/lib/libonnxruntime.so.1.31.1 \
       /out/libonnxruntime.so.1.31.1

# --- 3. runtime -------------------------------------------------------------
FROM debian:bookworm-slim AS runtime
# ca-certificates for https object stores; curl for the HEALTHCHECK; libstdc++6
# is what the onnxruntime library links besides libc. Versions follow the
# bookworm point release (pin them for reproducible images).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl libstdc++6 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 anemone \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/anemone --create-home anemone \
    && install -d -o anemone -g anemone /var/cache/anemone
COPY --from=build /out/anemone /usr/local/bin/anemone
COPY --from=onnxruntime /out/libonnxruntime.so.1.31.1 /usr/local/lib/anemone/libonnxruntime.so.1.31.1
COPY --chown=anemone:anemone examples/models /models
ENV ORT_DYLIB_PATH=/usr/local/lib/anemone/libonnxruntime.so.1.31.1 \
    ANEMONE_HOST=0.0.0.0 \
    ANEMONE_HTTP_PORT=8000 \
    ANEMONE_GRPC_PORT=8001 \
    ANEMONE_MODEL_CACHE_DIR=/var/cache/anemone \
    ANEMONE_LOG=info
USER 10001:10001
WORKDIR /var/lib/anemone
EXPOSE 8000 8001 8002
# Ready means: started, and every model that should be loaded is loaded. (Exec
# form: with another --http-port, change the port here too.)
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8000/v2/health/ready"]
ENTRYPOINT ["/usr/local/bin/anemone", "serve"]
CMD ["--model-repository", "/models"]
