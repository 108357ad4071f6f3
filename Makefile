# tether — see README.md. `make demo` and `make test` work on a fresh Debian 12 machine as root.
GO       ?= go
BIN      := bin
LDFLAGS  := -s -w -X github.com/tether-dev/tether/internal/version.Version=$(shell git describe --always --dirty 2>/dev/null || echo dev)
export CGO_ENABLED := 0

.PHONY: all build deps test unit lint vet staticcheck fuzz demo bench clean

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/tether ./cmd/tether
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/tether-agent ./cmd/tether-agent

# Debian packages the integration tests and the demo use (busybox, dnsmasq, musl...).
deps:
	./hack/install-deps.sh

# Everything, as CI runs it: vet, unit tests, the integration tests that
# need root and network namespaces (TETHER_INTEGRATION=1), short fuzzing.
test: deps vet
	TETHER_INTEGRATION=1 $(GO) test -count=1 -timeout 30m ./...
	./hack/fuzz.sh 10s

# Unit tests only: no root, no namespaces.
unit:
	$(GO) test ./...

vet:
	$(GO) vet ./...

staticcheck:
	cd tools && $(GO) build -o ../$(BIN)/staticcheck honnef.co/go/tools/cmd/staticcheck
	$(BIN)/staticcheck ./...

lint: vet staticcheck

# Longer fuzzing for local runs: make fuzz FUZZTIME=2m
FUZZTIME ?= 1m
fuzz:
	./hack/fuzz.sh $(FUZZTIME)

demo: deps build
	TETHER_INTEGRATION=1 $(GO) test -count=1 -v -run TestDemo ./test/demo | grep -v -e "^=== RUN" -e "^--- PASS" -e "^PASS"

clean:
	rm -rf $(BIN)

# Benchmarks (not part of test): ratios against baselines from the same run.
bench: deps
	TETHER_INTEGRATION=1 TETHER_BENCH=1 $(GO) test -count=1 -v -timeout 30m -run . ./test/bench | grep -v -e "^=== RUN"
