# One image for every EVA service: `eva serve <service>`, `eva migrate`,
# `eva seed`, `eva dev`.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/eva ./cmd/eva

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/eva /usr/local/bin/eva
USER nonroot
ENTRYPOINT ["/usr/local/bin/eva"]
