# cycler: the two commands a new user needs are `make demo` and `make test`.
# Both install what they need first (see scripts/install-deps.sh).

GO       ?= go
BIN      := $(CURDIR)/.bin
GOFILES   = $(shell find . -name '*.go' -not -path './tools/*' -not -path './.bin/*')
LDFLAGS  := -X github.com/cyclerhq/cycler/version.Version=$(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
# Integration tests find the Consul binary here.
export CYCLER_CONSUL_BIN := $(BIN)/consul

.PHONY: all build deps vet unit integration test demo fuzz clean bench-raft bench-install bench-lb bench-cycle bench-scale bench-doc bench vagrant-validate

all: build

## build: the cyclerd, cyclerctl and demo-app binaries into .bin/
build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/...

## deps: nginx, varnish, wrk and haproxy from apt; the Consul agent built from tools/consul
deps:
	./scripts/install-deps.sh

## vet: go vet (with and without the integration tag) and gofmt
vet:
	$(GO) vet ./...
	$(GO) vet -tags integration ./...
	@unformatted="$$(gofmt -l $(GOFILES))"; if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi

## unit: unit tests with the race detector
unit:
	$(GO) test -race -count=1 ./...

## integration: tests against real Consul, nginx, varnishd and cyclerd processes
integration: deps
	$(GO) test -tags integration -count=1 -timeout 40m ./integration/... ./lbdrivers/... ./cmd/...

## vagrant-validate: the VM lab's Vagrantfile parses (no VM, no provider needed)
vagrant-validate: deps
	vagrant validate --ignore-provider

## test: everything CI runs
test: deps vet unit vagrant-validate integration

## demo: a local lab on loopback; ARGS=--once prints the summary and exits
demo: deps build
	$(GO) run ./integration/lab $(ARGS)

## bench-raft: failover time and write throughput of real cyclerd servers (production timing); rewrites docs/benchmarks-raft.{md,json}
bench-raft: deps
	CYCLER_BENCH=1 $(GO) test -tags integration -count=1 -timeout 30m -run '^TestBenchRaft$$' -v ./integration/

## bench-install: a 50 MiB package installed on 20 real agents at once vs curl | tar xz of the same blob; rewrites docs/benchmarks-install.{md,json}
bench-install: deps
	CYCLER_BENCH=1 $(GO) test -tags integration -count=1 -timeout 30m -run '^TestBenchInstall$$' -v ./integration/

## bench-lb: LB switch latency and failed requests of cyclerd lb (nginx dynamic/reload, varnish) vs consul-template v0.41.1; rewrites docs/benchmarks-lb.{md,json}
bench-lb: deps
	scripts/install-bench-tools.sh
	CYCLER_BENCH=1 $(GO) test -tags integration -count=1 -timeout 30m -run '^TestBenchLBSwitch$$' -v ./integration/

## bench-cycle: failed requests and latency (wrk, hey) during 5 full cycles through nginx dynamic/reload and varnish vs an in-place deploy, plus the version-over-time chart; rewrites docs/benchmarks-cycle.{md,json,svg}
bench-cycle: deps
	scripts/install-bench-tools.sh
	CYCLER_BENCH=1 $(GO) test -tags integration -count=1 -timeout 60m -run '^TestBenchCycle$$' -v ./integration/

## bench-scale: orchestration overhead per cycle at 4, 50 and 500 hosts, server RSS, and resume time after kill -9 of the leader; rewrites docs/benchmarks-scale.{md,json}
bench-scale: deps
	CYCLER_BENCH=1 $(GO) test -tags integration -count=1 -timeout 60m -run '^TestBenchScale$$' -v ./integration/

## bench-doc: docs/benchmarks.md, the summary of every report above, with goals and misses
bench-doc:
	$(GO) run ./integration/benchdoc -dir docs

## bench: every benchmark report under docs/, then the summary docs/benchmarks.md
bench: bench-raft bench-lb bench-install bench-cycle bench-scale bench-doc

## fuzz: a short run of every fuzz target (their corpora live in testdata/fuzz)
fuzz:
	$(GO) test -run='^$$' -fuzz='^FuzzParse$$' -fuzztime=30s ./config/
	$(GO) test -run='^$$' -fuzz='^FuzzParseState$$' -fuzztime=30s ./pool/
	$(GO) test -run='^$$' -fuzz='^FuzzReadSnapshot$$' -fuzztime=30s ./raftstore/
	$(GO) test -run='^$$' -fuzz='^FuzzParseManifest$$' -fuzztime=30s ./pkgfile/
	$(GO) test -run='^$$' -fuzz='^FuzzExtract$$' -fuzztime=30s ./pkgfile/

clean:
	rm -rf $(BIN)/cyclerd $(BIN)/cyclerctl $(BIN)/cycler-demoapp
