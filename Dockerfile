# syntax=docker/dockerfile:1

# ---- build ----------------------------------------------------------------
FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends pkg-config libpq-dev libsqlite3-dev libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src

# Dependencies first, in their own layer, so source edits rebuild only the app.
COPY Cargo.toml Cargo.lock ./
# The guard crate is a workspace member and a dependency of the server. All of
# it: its Cargo.toml names its tests and example ([[test]], [[example]]), and
# cargo refuses a manifest whose named targets are missing.
COPY guard ./guard
# Stub targets: an empty lib and bin, and the `load` bench that Cargo.toml
# declares ([[bench]]), which must exist for cargo to read the manifest at
# all. The bench is never built here; its stub stays for the build below.
# (`.ci/docker-build-check` replays this stage without Docker, in CI.)
RUN mkdir -p src benches \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && echo 'fn main() {}' > benches/load.rs \
 && cargo build --release --locked \
 && rm -rf src

COPY src ./src
COPY migrations ./migrations
COPY public ./public
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --bin passkey-auth

# ---- run --------------------------------------------------------------------
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpq5 libsqlite3-0 libssl3 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /app --shell /usr/sbin/nologin app \
 && mkdir -p /app/data \
 && chown -R app:app /app
COPY --from=build /src/target/release/passkey-auth /usr/local/bin/passkey-auth

USER app
WORKDIR /app
# Listen on all interfaces inside the container; the SQLite default lives on
# the volume. Set DATABASE_URL to a postgres:// URL to use PostgreSQL instead.
ENV BIND_ADDR=0.0.0.0:3000 \
    DATABASE_URL=/app/data/auth.db \
    RUST_LOG=info
VOLUME ["/app/data"]
EXPOSE 3000
CMD ["passkey-auth"]
