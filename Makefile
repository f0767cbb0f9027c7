# skiff's make targets. `make demo` and `make test` are the README's two
# set-up commands.

GO      ?= go
BIN     := bin
SKIFF   := $(BIN)/skiff
# DATA is the demo server's data dir; empty means skiff's default
# (/var/lib/skiff as root, else ~/.local/share/skiff).
DATA    ?=
DEMO_HTTP ?= 127.0.0.1:8080
DEMO_API  ?= 127.0.0.1:7070

.PHONY: build demo demo-stop test test-setup vet clean bench-edge bench-deploy reliability image

build:
	$(GO) build -o $(SKIFF) ./cmd/skiff

# demo builds skiff and the hello app, starts `skiff server` in the
# background (its log in <data-dir>/server.log) and deploys examples/hello.
demo: build
	$(GO) build -o examples/hello/hello ./examples/hello
	@scripts/demo.sh "$(SKIFF)" "$(DATA)" "$(DEMO_HTTP)" "$(DEMO_API)"

# demo-stop destroys the demo app and stops the server.
demo-stop:
	@scripts/demo-stop.sh "$(SKIFF)" "$(DATA)"

# test installs what the tests need, then runs every test.
# The packages whose concurrency carries the most weight also run under
# the race detector; the edge's fuzz targets run briefly (10 s each).
RACE_PKGS := ./internal/edge/... ./internal/supervisor/... ./internal/logs/... ./internal/controller/... ./internal/store/... ./internal/edgefeed/...

test: test-setup vet
	$(GO) test -count=1 -timeout 30m ./...
	$(GO) test -race -count=1 -timeout 15m $(RACE_PKGS)
	$(GO) test -run=^$$ -fuzz=^FuzzLookup$$ -fuzztime=10s ./internal/edge
	$(GO) test -run=^$$ -fuzz=^FuzzCanonicalHost$$ -fuzztime=10s ./internal/edge
	$(GO) test -run=^$$ -fuzz=^FuzzSetForwarded$$ -fuzztime=10s ./internal/edge
	$(GO) test -run=^$$ -fuzz=^FuzzParseRequest$$ -fuzztime=10s ./internal/edge

test-setup:
	@scripts/test-setup.sh

vet:
	$(GO) vet ./...

# bench-edge measures the edge (the engines of its plain HTTP listener)
# against no proxy, nginx, HAProxy and Caddy on loopback (wrk, h2load;
# about 10 minutes) and writes bench/edge/results.md. BENCH_FLAGS passes
# flags to the runner, e.g. BENCH_FLAGS="-rounds 3 -cells h1-1k".
BENCH_FLAGS ?=
bench-edge: build
	@scripts/bench-setup.sh
	PATH="$$PATH:/usr/sbin" $(GO) run ./bench/edge -skiff $(SKIFF) -out bench/edge/results.md -engines raw,fasthttp,nethttp $(BENCH_FLAGS)

# image builds skiff's container image (a static binary in an empty
# image) for `skiff kube install --image`; IMAGE names it.
IMAGE ?= skiff:dev
image:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/skiff-static ./cmd/skiff
	docker build -q -t $(IMAGE) .

# bench-deploy measures the time from `skiff deploy --wait` to all traffic
# on the new release, per strategy and runtime (a few minutes), and writes
# bench/deploy/results.md.
bench-deploy: build test-setup
	$(GO) run ./bench/deploy -skiff $(SKIFF) -out bench/deploy/results.md $(BENCH_FLAGS)

# reliability deploys an app 20 times with each strategy on each runtime
# under constant mixed load (about 10 minutes) and writes
# bench/reliability/results.md; the test suite runs 5 of each.
reliability: test-setup
	SKIFF_REQUIRE_INTEGRATION=1 SKIFF_RELIABILITY_DEPLOYS=20 SKIFF_RELIABILITY_OUT=$(CURDIR)/bench/reliability/results.md \
		$(GO) test -count=1 -timeout 60m -run '^TestReliability$$' -v ./internal/e2e/

clean:
	rm -rf $(BIN) examples/hello/hello
