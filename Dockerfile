# syntax=docker/dockerfile:1
# xoauth2-proxy as a static binary on a distroless base: no shell, no package manager, CA
# certificates included (Gmail, Microsoft and their token endpoints are verified against them),
# running as the image's non-root user. README "Building from source" (Docker) shows how to run it;
# CI does not build the image (its machines have no container engine).

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
        -o /out/xoauth2-proxy ./cmd/xoauth2-proxy

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/xoauth2-proxy /usr/local/bin/xoauth2-proxy
# uid/gid 65532. The mounted /etc/xoauth2 must be writable by it: the admin API rewrites
# accounts.json there (temporary file + rename).
USER nonroot:nonroot
# 2525: SMTP for PowerMTA. 9090: admin API, /metrics, /healthz, /readyz.
EXPOSE 2525 9090
VOLUME ["/etc/xoauth2"]
ENTRYPOINT ["/usr/local/bin/xoauth2-proxy"]
# Inside the container the listeners must take 0.0.0.0 to be reachable through published ports;
# publish them on the host's loopback (docker run -p 127.0.0.1:2525:2525 -p 127.0.0.1:9090:9090).
CMD ["serve", "--config", "/etc/xoauth2/config.json", "--accounts", "/etc/xoauth2/accounts.json", \
     "--host", "0.0.0.0", "--port", "2525", "--admin-host", "0.0.0.0", "--admin-port", "9090", \
     "--admin-token-file", "/etc/xoauth2/admin-token", "--log-format", "json"]
