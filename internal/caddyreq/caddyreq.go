// Package caddyreq prepares requests for handler tests and benchmarks the
// way Caddy's HTTP server prepares every request before its handlers run.
package caddyreq

import (
	"context"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// WithContext returns r with a fresh replacer (with a placeholder function
// registered, as Caddy registers the http.request.* ones) and a vars map
// holding the client IP and trusted-proxy flag. The headers stay shared
// with r.
func WithContext(r *http.Request) *http.Request {
	repl := caddy.NewReplacer()
	repl.Map(func(key string) (any, bool) { return nil, false }) // http.request.*
	ctx := context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl)
	ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{
		caddyhttp.TrustedProxyVarKey: false,
		caddyhttp.ClientIPVarKey:     "127.0.0.1",
	})
	return r.WithContext(ctx)
}
