# syntax=docker/dockerfile:1
#
# The `conduit` image: one binary for every role (`conduit registry|runner|scheduler|
# gateway|dev`), run as a non-root user, with ONNX Runtime's shared library from the
# same PyPI wheel the tests use (scripts/requirements.txt pins onnxruntime==1.32.0).
#
#   docker build -t conduit:0.1.0 .
#
# GPU runners (deploy/helm/conduit/values-gpu.yaml): ONNX Runtime with the CUDA and
# TensorRT execution providers, on a CUDA + cuDNN runtime base whose CUDA major version
# is the one that onnxruntime-gpu release was built for (its release notes say which;
# 1.32.0 is not on PyPI for the GPU wheel, 1.31.1 is, and the runner accepts >= 1.31):
#
#   docker build -t conduit:0.1.0-cuda --build-arg ORT_WHEEL=onnxruntime-gpu \
#       --build-arg ORT_VERSION=1.31.1 \
#       --build-arg RUNTIME_IMAGE=nvidia/cuda:12.9.1-cudnn-runtime-ubuntu24.04 .
#
# The build stage runs the command CI runs (`make build`: cargo build --release -p
# conduit). No container engine exists where Conduit is developed: this file is not
# built by `make test` (docs/deploy.md says what is and is not checked).

ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# ---------------------------------------------------------------- build
FROM ${RUST_IMAGE} AS build
# onnxruntime (CPU) or onnxruntime-gpu (CUDA and TensorRT execution providers).
ARG ORT_WHEEL=onnxruntime
ARG ORT_VERSION=1.32.0
# Extra cargo features, e.g. `conduit/tract` for the pure-Rust backend as well.
ARG FEATURES=

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-pip unzip \
    && rm -rf /var/lib/apt/lists/*

# ONNX Runtime: the shared libraries of the pinned wheel (the `ort` backend loads
# libonnxruntime.so.<version> at run time through ORT_DYLIB_PATH).
RUN python3 -m pip download --no-deps --only-binary=:all: --dest /tmp/ort "${ORT_WHEEL}==${ORT_VERSION}" \
    && mkdir -p /opt/onnxruntime \
    && unzip -q -j /tmp/ort/*.whl 'onnxruntime/capi/libonnxruntime*.so*' -d /opt/onnxruntime \
    && test -f "/opt/onnxruntime/libonnxruntime.so.${ORT_VERSION}" \
    && rm -rf /tmp/ort

WORKDIR /src
COPY . .
# rust-toolchain.toml pins the toolchain (rustup installs it here if the image's differs).
ENV CARGO_TARGET_DIR=/build/target
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/build/target \
    if [ -n "${FEATURES}" ]; then \
        cargo build --release -p conduit --features "${FEATURES}"; \
    else \
        make build; \
    fi \
    && install -D -m 0755 /build/target/release/conduit /out/conduit

# ---------------------------------------------------------------- runtime
FROM ${RUNTIME_IMAGE}
ARG ORT_VERSION=1.32.0
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libstdc++6 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 conduit \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/conduit --create-home --shell /usr/sbin/nologin conduit
COPY --from=build /opt/onnxruntime/ /opt/onnxruntime/
COPY --from=build /out/conduit /usr/local/bin/conduit
ENV ORT_DYLIB_PATH=/opt/onnxruntime/libonnxruntime.so.${ORT_VERSION} \
    LD_LIBRARY_PATH=/opt/onnxruntime
USER 10001:10001
WORKDIR /var/lib/conduit
# gRPC and HTTP ports of the roles' defaults (the chart sets its own).
EXPOSE 7070 7080 7081 8000 8001
ENTRYPOINT ["/usr/local/bin/conduit"]
CMD ["--help"]
