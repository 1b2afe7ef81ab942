# Build, demo and test caddy-oidc. `make demo` runs the example site with a
# local OpenID provider; `make test` runs every check CI runs.

XCADDY_VERSION := v0.4.5
CADDY_VERSION  := v2.11.9

MODULE := github.com/oidcgate/caddy-oidc
SHELL  := /bin/bash

# What goes into bin/caddy: the module's Go files, except tests, examples
# and the development tools.
CADDY_SOURCES := go.mod go.sum $(shell find . -name '*.go' -not -name '*_test.go' \
	-not -path './bin/*' -not -path './examples/*' -not -path './cmd/*' -not -path './bench/*' \
	-not -path './internal/devop/*' -not -path './internal/testop/*')

.PHONY: demo test check-go test-deps clean

# Debian packages the tests run for real: Redis for the session store tests,
# Chromium for the browser test. Installed when missing (as root, or with
# sudo), so `make test` works on a fresh machine.

test-deps:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
		sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
		echo "Installing$$missing"; \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get update && \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	fi

bin/xcaddy:
	GOBIN=$(CURDIR)/bin go install github.com/caddyserver/xcaddy/cmd/xcaddy@$(XCADDY_VERSION)

# The module path is not published, so the proxy cannot resolve it: with
# "|off" after the first proxy, xcaddy's `go get` of it falls through to the
# local replacement that --with ...=./ sets up.
bin/caddy: bin/xcaddy $(CADDY_SOURCES)
	GOPROXY="$$(go env GOPROXY | cut -d, -f1)|off" \
		bin/xcaddy build $(CADDY_VERSION) --with $(MODULE)=./ --output bin/caddy

bin/oidc-dev-provider: go.mod go.sum $(shell find cmd/oidc-dev-provider internal/devop -name '*.go' -not -name '*_test.go')
	go build -o $@ ./cmd/oidc-dev-provider

bin/demo-api: go.mod go.sum $(shell find cmd/demo-api -name '*.go' -not -name '*_test.go')
	go build -o $@ ./cmd/demo-api

# The provider (localhost:9998) and the demo API (localhost:9999) run in the
# background and stop when Caddy exits (Ctrl+C).
demo: bin/caddy bin/oidc-dev-provider bin/demo-api
	@export OIDC_CLIENT_SECRET=demo-secret; \
	bin/oidc-dev-provider -client-secret "$$OIDC_CLIENT_SECRET" & provider=$$!; \
	bin/demo-api -addr localhost:9999 -issuer http://localhost:9998 & api=$$!; \
	trap 'kill $$provider $$api 2>/dev/null; wait $$provider $$api 2>/dev/null' EXIT; \
	trap 'exit 130' INT TERM; \
	for _ in $$(seq 50); do (exec 3<>/dev/tcp/localhost/9998) 2>/dev/null && break; sleep 0.1; done; sleep 0.3; \
	echo; \
	echo "==> Open http://localhost:8080 and sign in as demo / demo-password (Ctrl+C stops)."; \
	echo "    Then try the page's two buttons, which call the demo API with your access token:"; \
	echo "      Call API as the app       GET /api/whoami, Authorization: Bearer <<APPSMITH_USER_OAUTH2_ACCESS_TOKEN>>"; \
	echo "      Call admin-configured API GET /admin-api/whoami, no header (the Caddyfile adds it)"; \
	echo "    The page shows what the API received (a substituted token, valid for you); the token never reaches the page."; \
	echo "    Gated by the groups claim: /admin/ (admins; the demo user is refused), /reports-api/whoami (reporting)."; \
	echo; \
	bin/caddy run --config examples/Caddyfile --adapter caddyfile

test: test-deps check-go bin/caddy
	bin/caddy list-modules | grep -q http.handlers.oidc_auth
	bin/caddy adapt --config examples/Caddyfile --adapter caddyfile >/dev/null
	DEMO_CADDY_BIN=$(CURDIR)/bin/caddy go test ./examples/ -count=1 -v

check-go:
	@unformatted="$$(gofmt -l .)"; \
	if [ -n "$$unformatted" ]; then echo "gofmt needed for:"; echo "$$unformatted"; exit 1; fi
	go vet ./...
	go test -race ./...
	# A short fuzzing run on top of the checked-in corpus.
	go test -run '^$$' -fuzz=FuzzSubstitute -fuzztime=20s ./internal/substitute/
	# oidc_auth's attack surfaces: forged session cookies and records, rd=
	# redirects, callback links and back-channel logout tokens. -fuzz takes
	# one target at a time.
	go test -run '^$$' -fuzz='^FuzzSessionCookie$$' -fuzztime=6s ./oidcauth/
	go test -run '^$$' -fuzz='^FuzzUnmarshalSession$$' -fuzztime=6s ./oidcauth/
	go test -run '^$$' -fuzz='^FuzzSafeRedirect$$' -fuzztime=6s ./oidcauth/
	go test -run '^$$' -fuzz='^FuzzCallback$$' -fuzztime=6s ./oidcauth/
	go test -run '^$$' -fuzz='^FuzzLogoutToken$$' -fuzztime=6s ./oidcauth/

# `make bench`: the Go benchmarks, then the load comparison
# (bench/cmd/loadcompare): the same wrk load through Caddy's reverse_proxy
# alone, through oidc_auth + token_inject (cookie, memory and Redis session
# stores) and through forward_auth to oauth2-proxy, each front end on half
# the CPUs and wrk with the upstream on the other half. Both rewrite their tables
# in docs/PERFORMANCE.md; raw output, Caddyfiles and logs go to bench/out/.
# wrk and redis-server are installed when missing (like test-deps), and
# oauth2-proxy is built into bin/. Not part of `make test`. Settings, e.g.:
#   make bench BENCH_CONNECTIONS=64 BENCH_DURATION=10s BENCH_ROUNDS=5
#   make bench BENCH_FLAGS='-profile b-cookie,b-redis'   (CPU profiles of Caddy)
#   make bench BENCH_FLAGS=-split-cpus=false   (front ends share the CPUs with wrk)

OAUTH2_PROXY_VERSION ?= v7.15.6
BENCH_CONNECTIONS    ?= 32
BENCH_THREADS        ?= 2
BENCH_DURATION       ?= 3s
BENCH_ROUNDS         ?= 5
BENCH_WARMUP         ?= 2s
BENCH_FLAGS          ?=

.PHONY: bench
bench: bin/caddy
	@missing=""; \
	command -v wrk >/dev/null || missing="$$missing wrk"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	if [ -n "$$missing" ]; then \
		sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
		echo "Installing$$missing"; \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get update && \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	fi
	@go version -m bin/oauth2-proxy 2>/dev/null | grep -Eq '^\s+mod\s+github.com/oauth2-proxy/oauth2-proxy/v7\s+$(OAUTH2_PROXY_VERSION)\s' || { \
		echo "Building oauth2-proxy $(OAUTH2_PROXY_VERSION) into bin/"; \
		GOBIN=$(CURDIR)/bin go install github.com/oauth2-proxy/oauth2-proxy/v7@$(OAUTH2_PROXY_VERSION); }
	rm -rf bench/out && mkdir -p bench/out
	set -o pipefail; go test -run '^$$' -bench . -benchmem ./oidcauth/ ./tokeninject/ ./internal/substitute/ | tee bench/out/gobench.txt
	go run ./bench/cmd/gobench -in bench/out/gobench.txt -doc docs/PERFORMANCE.md
	go run ./bench/cmd/loadcompare -caddy bin/caddy -oauth2-proxy bin/oauth2-proxy \
		-connections $(BENCH_CONNECTIONS) -threads $(BENCH_THREADS) -duration $(BENCH_DURATION) \
		-rounds $(BENCH_ROUNDS) -warmup $(BENCH_WARMUP) -out bench/out -doc docs/PERFORMANCE.md $(BENCH_FLAGS)

clean:
	rm -rf bin
