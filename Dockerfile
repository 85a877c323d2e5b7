# Builds the netia binary; used by docker-compose.yml.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin netia

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/netia /usr/local/bin/netia
WORKDIR /var/lib/netia
ENV HOST=0.0.0.0 PORT=4000
EXPOSE 4000
CMD ["netia", "serve"]
