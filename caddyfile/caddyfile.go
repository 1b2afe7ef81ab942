// Package caddyfile registers the Caddyfile directives of caddy-oidc:
// oidc_auth. Each is ordered among Caddy's standard directives, so a
// Caddyfile needs no `order` line.
package caddyfile

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("oidc_auth", parseOIDCAuth)
	// Authentication runs where Caddy's own basic_auth does: after
	// rewrites, before request_header, token_inject and the proxy.
	httpcaddyfile.RegisterDirectiveOrder("oidc_auth", httpcaddyfile.Before, "basic_auth")
}
