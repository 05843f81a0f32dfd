# syntax=docker/dockerfile:1
# Portcullis: a static binary on distroless, running as uid/gid 65532
# (distroless's nonroot). The user is numeric so that Kubernetes'
# runAsNonRoot can verify it without a runAsUser of its own.
#   docker build --build-arg VERSION=$(git describe --tags --always) -t portcullis .

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/portcullis . \
 && /out/portcullis -version

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/portcullis /portcullis
USER 65532:65532
EXPOSE 8080 9090
ENV PORTCULLIS_CONFIG=/etc/portcullis/config.yaml
# No shell or curl in distroless: the binary checks itself.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 CMD ["/portcullis", "-health-check"]
ENTRYPOINT ["/portcullis"]
