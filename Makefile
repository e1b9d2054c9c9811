# The same commands as README.md and .ci/run; make is optional.

GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
IMAGE   ?= xoauth2-proxy:$(VERSION)

.PHONY: all build test lint fuzz demo ci docker clean

all: lint test build

# README "Installation": the binary in the current directory, its version stamped in.
build:
	$(GO) build -trimpath -ldflags "-X main.version=$(VERSION)" -o xoauth2-proxy ./cmd/xoauth2-proxy

# README "The two commands".
test:
	$(GO) test -race ./...

# gofmt (no file may need formatting) and go vet, as CI runs them.
lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Every fuzz target for FUZZTIME (default 5s) each, as CI does.
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
	  for f in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do \
	    echo "$$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $${FUZZTIME:-5s} $$pkg >/dev/null || exit 1; \
	  done; \
	done

demo:
	$(GO) run ./cmd/xoauth2-proxy demo

# Everything CI checks.
ci:
	.ci/run

docker:
	docker build --build-arg VERSION=$(VERSION) -t $(IMAGE) .

clean:
	rm -f xoauth2-proxy
