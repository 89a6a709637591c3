# notesync: `make run` starts one node, `make test` installs the test
# dependencies (fuse3, chromium, iproute2, nftables) when missing and runs
# every test.

GO ?= go

.PHONY: run cluster test test-deps vet fmt bench gobench

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

# Every test, browser and LiteFS ones included, with the race detector.
test: test-deps vet
	$(GO) test -race -count=1 -timeout 30m ./...

# The load tool (bench/): one node it starts itself unless ARGS say
# otherwise, e.g. make bench ARGS='-start cluster -users 30 -clients 150'.
bench:
	$(GO) run ./bench $(or $(ARGS),-start single)

# The Go benchmarks of every package.
gobench:
	$(GO) test -run '^$$' -bench . -benchmem ./...
