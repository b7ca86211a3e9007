# syntax=docker/dockerfile:1
# prewarm: every worker and prewarmctl in one image; compose.yaml picks one with `command:`.
#   docker build -t prewarm:dev .

ARG EXECUTABLES="entry-ingest store-scorer ka-prewarmer push-producer recommend-api prewarmctl"

FROM swift:6.1-bookworm AS build
ARG EXECUTABLES
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        pkg-config librdkafka-dev libhiredis-dev libpq-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, so a source change does not fetch them again.
COPY Package.swift Package.resolved* ./
RUN swift package resolve
COPY . .
# The Swift runtime is linked statically: the runtime stage has no Swift toolchain.
RUN swift build -c release --static-swift-stdlib \
    && bin="$(swift build -c release --show-bin-path)" \
    && mkdir -p /out \
    && for exe in $EXECUTABLES; do cp "$bin/$exe" /out/; done

FROM debian:bookworm-slim AS runtime
ARG EXECUTABLES
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        librdkafka1 libhiredis0.14 libpq5 tzdata ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin prewarm
COPY --from=build /out/ /usr/local/bin/
# Fail the build, not the first start, if a shared library is missing.
RUN for exe in $EXECUTABLES; do \
        if ldd "/usr/local/bin/$exe" | grep 'not found'; then echo "$exe: missing libraries" >&2; exit 1; fi; \
    done
USER prewarm
EXPOSE 8080
CMD ["prewarmctl", "--help"]
