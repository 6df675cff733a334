# opmond — build, run and test. Only Go is needed.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
CONFIG  ?= $(wildcard opmond.toml)
FUZZTIME ?= 10s
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: build run test bench fuzz lint clean proto ui-vendor

## build: a static binary ./opmond
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o opmond .

## run: build and run the daemon in the foreground (./opmond.toml if present, else built-in defaults)
run: build
	./opmond serve $(if $(CONFIG),--config $(CONFIG))

## test: vet, then every test with the race detector
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m ./...

## bench: the Go benchmarks of the hot paths (store, query, decode, encode)
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 1 -timeout 60m ./...

## fuzz: a short run of every fuzz target (FUZZTIME each)
fuzz:
	$(GO) test ./schema -run '^$$' -fuzz '^FuzzDecodeStoreRequest$$' -fuzztime $(FUZZTIME)
	$(GO) test ./schema -run '^$$' -fuzz '^FuzzParseQueryRequest$$' -fuzztime $(FUZZTIME)
	$(GO) test ./storage -run '^$$' -fuzz '^FuzzDecodeBlock$$' -fuzztime $(FUZZTIME)
	$(GO) test ./anchor -run '^$$' -fuzz '^FuzzParseAnchor$$' -fuzztime $(FUZZTIME)
	$(GO) test ./anchor -run '^$$' -fuzz '^FuzzParseShared$$' -fuzztime $(FUZZTIME)
	$(GO) test ./anchor -run '^$$' -fuzz '^FuzzParseMonitoring$$' -fuzztime $(FUZZTIME)
	# global configuration download: the signed directory parser (large seeds: keep minimising short)
	$(GO) test ./anchor -run '^$$' -fuzz '^FuzzParseDirectory$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 3s
	# staying up: the store and query handlers over a real listener
	$(GO) test ./daemon -run '^$$' -fuzz '^FuzzHTTPHandlers$$' -fuzztime $(FUZZTIME)

## lint: gofmt and staticcheck
lint:
	@test -z "$$(gofmt -l . | grep -v '^testdata/')" || { gofmt -l . ; echo "gofmt needed"; exit 1; }
	$(GO) run $(STATICCHECK) ./...

## ui-vendor: refresh the dashboard's copy of uPlot from npm (UPLOT_VERSION; needs npm, not needed to build)
UPLOT_VERSION ?= 1.6.32
ui-vendor:
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	npm pack --silent --pack-destination "$$tmp" uplot@$(UPLOT_VERSION) >/dev/null && \
	tar -xzf "$$tmp"/uplot-$(UPLOT_VERSION).tgz -C "$$tmp" && \
	cp "$$tmp"/package/dist/uPlot.iife.min.js "$$tmp"/package/dist/uPlot.min.css daemon/ui/vendor/ && \
	cp "$$tmp"/package/LICENSE daemon/ui/vendor/uPlot.LICENSE

clean:
	rm -f opmond opmond_*.deb

# --- packaging: install into the system or a staging tree, and a .deb ---
DESTDIR ?=
ARCH    ?= $(shell $(GO) env GOARCH)
DEBVERSION ?= $(shell echo "$(VERSION)" | sed -e 's/^v//' -e 's/^[^0-9]/0.0.0~&/' -e 's/-/~/g')
NFPM    ?= nfpm

.PHONY: install deb

## install: binary, systemd unit, /etc/opmond (configuration, ssl), /var/lib/opmond under DESTDIR (owners need root and the user opmond)
install: build
	DESTDIR="$(DESTDIR)" BINARY=./opmond sh packaging/install.sh

## deb: opmond_VERSION_ARCH.deb with nfpm (go install github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.48.0)
deb: build
	@command -v $(NFPM) >/dev/null || { echo "nfpm not found: go install github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.48.0"; exit 1; }
	VERSION="$(DEBVERSION)" ARCH="$(ARCH)" $(NFPM) package --config packaging/nfpm.yaml --packager deb --target .

# gRPC: Go code generated from daemon/opmonrpc/*.proto, committed. protoc is
# Debian's protobuf-compiler; the plugins are go.mod tools, so their versions
# are pinned there. PROTO_OUT lets the drift test generate elsewhere.
PROTO_DIR ?= daemon/opmonrpc
PROTO_OUT ?= $(PROTO_DIR)

## proto: regenerate daemon/opmonrpc from its .proto files (needs protoc: apt-get install protobuf-compiler)
proto:
	protoc -I $(PROTO_DIR) \
		--plugin=protoc-gen-go=$$($(GO) tool -n protoc-gen-go) \
		--plugin=protoc-gen-go-grpc=$$($(GO) tool -n protoc-gen-go-grpc) \
		--go_out=$(PROTO_OUT) --go_opt=paths=source_relative \
		--go-grpc_out=$(PROTO_OUT) --go-grpc_opt=paths=source_relative \
		$(PROTO_DIR)/common_messages.proto $(PROTO_DIR)/opmonitor_service.proto
