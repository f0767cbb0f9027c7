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

.PHONY: build demo demo-stop test test-setup vet clean

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
# the race detector.
RACE_PKGS := ./internal/edge/... ./internal/supervisor/... ./internal/logs/... ./internal/controller/... ./internal/store/...

test: test-setup vet
	$(GO) test -count=1 -timeout 30m ./...
	$(GO) test -race -count=1 -timeout 15m $(RACE_PKGS)

test-setup:
	@scripts/test-setup.sh

vet:
	$(GO) vet ./...

clean:
	rm -rf $(BIN) examples/hello/hello
