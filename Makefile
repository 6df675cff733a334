# opmond — build, run and test. Only Go is needed.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
CONFIG  ?= $(wildcard opmond.toml)
FUZZTIME ?= 10s
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: build run test bench fuzz lint clean ui-vendor

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
	rm -f opmond
