# Portcullis — the two commands in README.md:
#   go run . -config config.example.yaml     run it
#   make test                                run every test
# `make test` installs what the tests need from Debian packages when they are
# missing: a C toolchain for -race (gcc, libc6-dev), redis-server, nginx,
# caddy, curl and openssl for the TLS tests, promtool (package prometheus) for the alerting-rule tests, node and
# npm, the pinned npm packages (jose, openid-client) the tests run, and with
# go install the zitadel/oidc example OpenID provider.

GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
FUZZTIME ?= 10s

.PHONY: test deps check build fuzz bench soak clean

test: deps check
	$(GO) test -race -count=1 ./...
	cd deploy && $(GO) test -count=1 ./...
	# Memory-bound floods measure the heap, which the race detector distorts.
	$(GO) test -count=1 -run 'Flood|MemoryBound|CostIsFlat' ./...

# Static checks that must pass before tests are worth running.
check:
	@unformatted=$$(gofmt -l .); if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) vet ./...
	cd deploy && $(GO) vet ./...

deps:
	@missing=""; \
	command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || missing="$$missing redis-server"; \
	command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$$missing nginx"; \
	command -v caddy >/dev/null 2>&1 || [ -x /usr/bin/caddy ] || missing="$$missing caddy"; \
	command -v node >/dev/null 2>&1 || missing="$$missing nodejs"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing npm"; \
	command -v gcc >/dev/null 2>&1 || missing="$$missing gcc"; \
	[ -f /usr/include/stdlib.h ] || missing="$$missing libc6-dev"; \
	command -v promtool >/dev/null 2>&1 || [ -x /usr/bin/promtool ] || missing="$$missing prometheus"; \
	command -v curl >/dev/null 2>&1 || missing="$$missing curl"; \
	command -v openssl >/dev/null 2>&1 || missing="$$missing openssl"; \
	if [ -n "$$missing" ]; then \
	  echo "installing test dependencies:$$missing"; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi
	@# npm openid-client (private_key_jwt against a real Portcullis), pinned by its lock file.
	@[ -f testdata/openid-client/node_modules/openid-client/package.json ] || \
	  npm ci --prefix testdata/openid-client --no-audit --no-fund
	@# The JWT verifier the key-rotation test runs (npm jose), from its lock file.
	@[ -f internal/josetest/node_modules/jose/package.json ] || npm ci --no-audit --no-fund --prefix internal/josetest
	@# A real OpenID provider for the trusted-issuer test: zitadel/oidc's example OP,
	@# installed by go install as "server" in GOBIN (default GOPATH/bin).
	@gobin=$$($(GO) env GOBIN); [ -n "$$gobin" ] || gobin=$$($(GO) env GOPATH)/bin; \
	  [ -x "$$gobin/server" ] || $(GO) install github.com/zitadel/oidc/v3/example/server@v3.52.0

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o portcullis .

# Each fuzz target for FUZZTIME, starting from the checked-in seed corpora.
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./config/
	$(GO) test -run '^$$' -fuzz '^FuzzListeners$$' -fuzztime $(FUZZTIME) ./config/
	$(GO) test -run '^$$' -fuzz '^FuzzCleanPath$$' -fuzztime $(FUZZTIME) ./policy/
	$(GO) test -run '^$$' -fuzz '^FuzzMatch$$' -fuzztime $(FUZZTIME) ./policy/
	$(GO) test -run '^$$' -fuzz '^FuzzUpstreamRoutesAlike$$' -fuzztime $(FUZZTIME) ./policy/
	$(GO) test -run '^$$' -fuzz '^FuzzParseHost$$' -fuzztime $(FUZZTIME) ./policy/
	$(GO) test -run '^$$' -fuzz '^FuzzParseMethod$$' -fuzztime $(FUZZTIME) ./policy/
	$(GO) test -run '^$$' -fuzz '^FuzzSplitTarget$$' -fuzztime $(FUZZTIME) ./policy/
	$(GO) test -run '^$$' -fuzz '^FuzzHasAccessToken$$' -fuzztime $(FUZZTIME) ./policy/
	$(GO) test -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime $(FUZZTIME) ./issuer/
	$(GO) test -run '^$$' -fuzz '^FuzzStrictJSON$$' -fuzztime $(FUZZTIME) ./issuer/
	$(GO) test -run '^$$' -fuzz '^FuzzParseScope$$' -fuzztime $(FUZZTIME) ./claim/
	$(GO) test -run '^$$' -fuzz '^FuzzClaimMatch$$' -fuzztime $(FUZZTIME) ./claim/
	$(GO) test -run '^$$' -fuzz '^FuzzCut$$' -fuzztime $(FUZZTIME) ./seclog/
	$(GO) test -run '^$$' -fuzz '^FuzzClientAssertion$$' -fuzztime $(FUZZTIME) ./issuer/
	$(GO) test -run '^$$' -fuzz '^FuzzParseJWKS$$' -fuzztime $(FUZZTIME) ./issuer/
	$(GO) test -run '^$$' -fuzz '^FuzzClientIP$$' -fuzztime $(FUZZTIME) ./proxy/
	$(GO) test -run '^$$' -fuzz '^FuzzBearer$$' -fuzztime $(FUZZTIME) ./proxy/
	$(GO) test -run '^$$' -fuzz '^FuzzForwardAuthHeaders$$' -fuzztime $(FUZZTIME) ./proxy/
	$(GO) test -run '^$$' -fuzz '^FuzzParseHead$$' -fuzztime $(FUZZTIME) ./server/
	$(GO) test -run '^$$' -fuzz '^FuzzChunkScanner$$' -fuzztime $(FUZZTIME) ./server/
	$(GO) test -run '^$$' -fuzz '^FuzzGuard$$' -fuzztime $(FUZZTIME) ./server/
	$(GO) test -run '^$$' -fuzz '^FuzzTarget$$' -fuzztime $(FUZZTIME) ./extauthz/
	$(GO) test -run '^$$' -fuzz '^FuzzCheckCodec$$' -fuzztime $(FUZZTIME) ./extauthz/

# Mixed traffic against the real binary for SOAK_DURATION (default 3m):
# RSS and goroutines must stay bounded (see README, "Bounded memory").
# SOAK_FLAGS=-reload adds a SIGHUP every 10 s.
SOAK_DURATION ?= 3m
soak: deps build
	SOAK_DURATION=$(SOAK_DURATION) $(GO) run ./bench/soak -binary ./portcullis $(SOAK_FLAGS)

# The reproducible benchmark; see bench/README.md.
bench:
	./bench/run.sh

clean:
	rm -f portcullis
	rm -rf bench/results
