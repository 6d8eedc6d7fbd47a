# clusterproxy container image: a static binary on distroless, run as nonroot.
#   docker build -t clusterproxy .
#   docker run --rm -p 127.0.0.1:6380:6380 clusterproxy -listen 0.0.0.0:6380 -seeds node:6379
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/proxy ./cmd/proxy

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/proxy /proxy
USER nonroot:nonroot
EXPOSE 6380 9121
# The healthcheck is the binary itself (no shell or curl in the image); the
# compose file points it at the metrics address it configures.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s CMD ["/proxy", "healthcheck", "-metrics-addr", "127.0.0.1:9121"]
ENTRYPOINT ["/proxy"]
CMD ["-listen", "0.0.0.0:6380", "-metrics-addr", "0.0.0.0:9121"]
