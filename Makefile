# clusterproxy: the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
export PATH := $(PATH):/usr/local/go/bin
GO ?= go

.PHONY: all deps build run test test-short vet fuzz bench clean

all: build

deps:
	@./scripts/deps.sh

build:
	$(GO) build -o bin/proxy ./cmd/proxy

# Runs the proxy on 127.0.0.1:6380 in front of a local six-node cluster whose
# data lives in .data/dev-cluster (remove it to start afresh). Ctrl-C stops both.
run: deps build
	./bin/proxy -dev -listen 127.0.0.1:6380 -metrics-addr 127.0.0.1:9121

# The whole suite, integration tests against real redis-server clusters
# included, with the race detector.
test: deps
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 15m ./...

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }

fuzz:
	$(GO) test -run XXX -fuzz FuzzReadCommand -fuzztime 60s ./internal/resp/
	$(GO) test -run XXX -fuzz FuzzReadReply -fuzztime 60s ./internal/resp/
	$(GO) test -run XXX -fuzz FuzzSession -fuzztime 60s ./proxy/

bench:
	$(GO) test -run XXX -bench . -benchmem ./internal/resp/ ./router/

# Side-by-side load figures with the Go load tool (bench/): proxy against direct
# cluster access, alternating rounds, on a local cluster it starts itself.
# Reports land in .data/bench/. Extra flags: make bench-compare BENCH_ARGS="-rounds 5".
.PHONY: bench-compare
bench-compare: deps
	@mkdir -p .data/bench
	$(GO) run ./bench -local -scenario getset -rounds 3 -json .data/bench/getset.json -md .data/bench/getset.md -svg .data/bench/getset.svg $(BENCH_ARGS)
	$(GO) run ./bench -local -scenario pipeline -rounds 3 -json .data/bench/pipeline.json -md .data/bench/pipeline.md -svg .data/bench/pipeline.svg $(BENCH_ARGS)
	$(GO) run ./bench -local -scenario mset -rounds 3 -json .data/bench/mset.json -md .data/bench/mset.md -svg .data/bench/mset.svg $(BENCH_ARGS)

clean:
	rm -rf bin .data
