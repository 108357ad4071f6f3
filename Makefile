# tether — see README.md. `make demo` and `make test` work on a fresh Debian 12 machine as root.
GO       ?= go
BIN      := bin
LDFLAGS  := -s -w -X github.com/tether-dev/tether/internal/version.Version=$(shell git describe --always --dirty 2>/dev/null || echo dev)
export CGO_ENABLED := 0

.PHONY: all build deps test unit lint vet staticcheck fuzz demo demo-netns bench soak clean
.PHONY: cluster-up cluster-down cluster-status cluster-smoke images product-images mkimage

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/tether ./cmd/tether
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/tether-agent ./cmd/tether-agent

# Debian packages the integration tests and the demo use (busybox, dnsmasq, musl...).
deps:
	./hack/install-deps.sh

# Everything, as CI runs it (hack/test.sh): vet (amd64 and arm64),
# staticcheck, unit tests, the same under the race detector, the
# integration tests that need root and network namespaces
# (TETHER_INTEGRATION=1), the end-to-end tests on the local Kubernetes
# cluster (TETHER_E2E=1; brought up and down again), short fuzzing.
test: deps vet staticcheck
	./hack/test.sh

# Unit tests only: no root, no namespaces.
unit:
	$(GO) test ./...

# gofmt, and vet for both architectures the supervisor is built for.
vet:
	@unformatted=$$(gofmt -l .); if [ -n "$$unformatted" ]; then echo "not gofmt'ed (run gofmt -w on them): $$unformatted"; exit 1; fi
	$(GO) vet ./...
	GOARCH=arm64 $(GO) vet ./...

staticcheck:
	cd tools && $(GO) build -o ../$(BIN)/staticcheck honnef.co/go/tools/cmd/staticcheck
	$(BIN)/staticcheck ./...

lint: vet staticcheck

# Longer fuzzing for local runs: make fuzz FUZZTIME=2m
FUZZTIME ?= 1m
fuzz:
	./hack/fuzz.sh $(FUZZTIME)

# The seed demo on Kubernetes: the local cluster (or TETHER_DEMO_KUBECONFIG),
# the ip-visit-counter app, and your local copy stealing your requests.
demo: deps build
	./hack/demo.sh

# The same ideas without Kubernetes: a "pod" made of network namespaces.
demo-netns: deps build
	TETHER_INTEGRATION=1 $(GO) test -count=1 -v -run TestDemo ./test/demo | grep -v -e "^=== RUN" -e "^--- PASS" -e "^PASS"

clean:
	rm -rf $(BIN)

# Benchmarks (not part of test): ratios against baselines from the same run,
# on the local cluster (brought up if needed, and down again if bench started
# it) and in network-namespace pods. Writes bench/results/ (SUMMARY.md is the
# table the README shows). See hack/bench.sh.
bench: deps
	./hack/bench.sh

# The churn soak (not part of test, which runs it for 3 minutes): 30 minutes
# of sessions starting and stopping (up to 50 at once) on one target under
# unmatched load, on the local cluster (brought up if needed, and down again
# if soak started it). TETHER_SOAK_DURATION=1h for longer. See hack/soak.sh.
soak: deps
	./hack/soak.sh

# ---- Local Kubernetes cluster (hack/cluster/README.md) ----------------------
# A real single-node cluster (v1.33) built from source: 6-15 min the first
# time, seconds when the build cache is warm. Needs root.
cluster-up:
	./hack/cluster/up.sh

cluster-down:
	./hack/cluster/down.sh

cluster-status:
	./hack/cluster/status.sh

cluster-smoke:
	./hack/cluster/smoke.sh

# Images: docker-archive tarballs made FROM scratch by hack/mkimage, imported
# into the cluster's containerd if it runs (else by the next cluster-up). The
# cluster's own (pause, coredns, clustertool) come from its build cache; the
# product's (the agent tether.local/tether-agent:dev, the demo's) are written
# to IMAGE_DIR by PRODUCT_IMAGES, by default hack/images.sh. Every *.tar in
# IMAGE_DIR is imported. `make images PRODUCT_IMAGES=` skips the product's.
IMAGE_DIR      := .cache/images
AGENT_IMAGE    ?= tether.local/tether-agent:dev
PRODUCT_IMAGES ?= product-images

images: $(PRODUCT_IMAGES)
	./hack/cluster/build.sh images
	./hack/cluster/import-images.sh --if-up

product-images: deps
	IMAGE_DIR=$(IMAGE_DIR) AGENT_IMAGE=$(AGENT_IMAGE) ./hack/images.sh

mkimage:
	$(GO) build -trimpath -o $(BIN)/mkimage ./hack/mkimage
