# notesync: `make run` starts one node, `make test` installs the test
# dependencies (fuse3, chromium, iproute2, nftables) when missing and runs
# every test, `make screenshots` remakes the README's picture.

GO ?= go

.PHONY: run cluster test test-deps vet fmt bench gobench screenshots

run:
	$(GO) run .

cluster:
	$(GO) run . cluster

test-deps:
	./scripts/install-test-deps.sh

vet:
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@$(GO) mod tidy -diff || { echo "go.mod or go.sum is not tidy (the diff above): run go mod tidy"; exit 1; }

# Every test, browser and LiteFS ones included, with the race detector.
# The browser tests' screenshots of every view, at both widths, are kept
# under test-output/_artifacts/ (one folder per test; see each test's log).
test: test-deps vet
	mkdir -p $(CURDIR)/test-output
	$(GO) test -race -count=1 -timeout 50m -artifacts -outputdir $(CURDIR)/test-output ./...

# The README's picture (docs/two-tabs.png): the browser test across a local
# LiteFS cluster, one tab pinned to node1 and one to node3, in sync.
screenshots: test-deps
	$(GO) test -count=1 -timeout 15m -run 'TestBrowserAcrossNodes$$' ./e2e/ -args -readme-screenshot=$(CURDIR)/docs/two-tabs.png

# The load tool (bench/): one node it starts itself unless ARGS say
# otherwise, e.g. make bench ARGS='-start cluster -users 30 -clients 150'.
bench:
	$(GO) run ./bench $(or $(ARGS),-start single)

# The Go benchmarks of every package.
gobench:
	$(GO) test -run '^$$' -bench . -benchmem ./...
