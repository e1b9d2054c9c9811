# The same commands as README.md and .ci/run; make is optional.

GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
IMAGE   ?= xoauth2-proxy:$(VERSION)

# Packages (README "Install from a package"): nfpm, run from the module proxy at a fixed
# version so that it stays out of go.mod.
NFPM           ?= $(GO) run github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.48.0
PKG_VERSION    ?= $(shell packaging/version.sh)
PKG_ARCHS      ?= amd64 arm64
PKG_FORMATS    ?= deb rpm
PKG_MAINTAINER ?= xoauth2-proxy maintainers <maintainers@xoauth2-proxy.invalid>
DIST           ?= dist

.PHONY: all build test lint fuzz demo ci docker packages clean

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

# A .deb and an .rpm per architecture in $(DIST)/: a static binary for /usr/bin, the unit of
# deploy/ with its paths moved from /usr/local/bin to /usr/bin, the samples of examples/ as
# /etc/xoauth2 configuration files, and packaging/scripts/ (packaging/nfpm.yaml says what goes
# where). test/packages/run.sh installs, upgrades and purges the .deb.
packages:
	@set -e; for arch in $(PKG_ARCHS); do \
	  d=$(DIST)/linux-$$arch; mkdir -p $$d; \
	  echo "== xoauth2-proxy $(PKG_VERSION) linux/$$arch"; \
	  CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" \
	    -o $$d/xoauth2-proxy ./cmd/xoauth2-proxy; \
	  sed 's#/usr/local/bin/xoauth2-proxy#/usr/bin/xoauth2-proxy#g' deploy/xoauth2-proxy.service >$$d/xoauth2-proxy.service; \
	  for f in $(PKG_FORMATS); do \
	    PKG_VERSION='$(PKG_VERSION)' PKG_ARCH=$$arch PKG_DIST=$$d PKG_MAINTAINER='$(PKG_MAINTAINER)' \
	      $(NFPM) package --config packaging/nfpm.yaml --packager $$f --target $(DIST)/; \
	  done; \
	done

clean:
	rm -f xoauth2-proxy
	rm -rf $(DIST)
