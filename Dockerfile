# The TokenLens server as an image: built with the Rust toolchain, run on a slim Debian with
# OpenBLAS, oneMKL (bf16 on the CPU's matrix units), the built site and the default models.
#
#   podman build -t tokenlens .            # or docker build
#   podman run -p 7860:7860 -v tokenlens-data:/data tokenlens
#   podman run -p 7860:7860 -v ./models:/data/models tokenlens --model /data/models/my.gguf
#
# The port comes from $PORT (7860 by default, as Hugging Face Spaces expect); permalinks go to
# SQLite under /data unless DATABASE_URL names a PostgreSQL; extra model files go under /data.
# deploy/compose.yaml runs two replicas behind nginx on one PostgreSQL.

FROM rust:1.89-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends nodejs npm python3-pip python3-venv \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The node packages first (binaryen's wasm-opt), so that a code change does not fetch them again.
COPY end2end/package.json end2end/package-lock.json end2end/
RUN cd end2end && npm ci --no-audit --no-fund
COPY . .
# The wasm front end (target/site) and the release binaries; then what they load at run time
# into /opt/tokenlens: oneMKL and the default models.
ENV TOKENLENS_CACHE=/opt/tokenlens
RUN bash scripts/build-web.sh \
    && bash scripts/fetch-mkl.sh \
    && bash scripts/fetch-models.sh \
    && rm -rf /opt/tokenlens/venv /opt/tokenlens/wheels

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends libopenblas0-pthread ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 1000 --create-home --shell /usr/sbin/nologin tokenlens \
    && mkdir -p /data && chown tokenlens: /data
COPY --from=build /src/target/release/tokenlens-server /src/target/release/tokenlens /usr/local/bin/
COPY --from=build /src/target/site /opt/tokenlens/site
COPY --from=build /opt/tokenlens /opt/tokenlens
ENV TOKENLENS_CACHE=/opt/tokenlens \
    TOKENLENS_SITE=/opt/tokenlens/site \
    TOKENLENS_DATA_DIR=/data \
    PORT=7860
USER 1000
VOLUME /data
EXPOSE 7860
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s \
    CMD curl -fsS "http://127.0.0.1:${PORT}/healthz" || exit 1
# $PORT decides the address; any arguments go to the server (default: the two default models).
ENTRYPOINT ["/bin/sh", "-c", "exec tokenlens-server --addr \"0.0.0.0:${PORT}\" \"$@\"", "tokenlens-server"]
CMD ["--model", "smollm2-135m", "--model", "gemma3-270m"]
