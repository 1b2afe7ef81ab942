// Package caddyfile registers the Caddyfile directives of caddy-oidc:
// oidc_auth and token_inject. Each is ordered among Caddy's standard directives, so a
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

	httpcaddyfile.RegisterHandlerDirective("token_inject", parseTokenInject)
	// After request_header, so an admin's
	// `request_header Authorization "Bearer <<...>>"` is substituted, and
	// after templates (and encode, intercept), so that those handlers are
	// given the request as the client sent it; before handle, route and
	// reverse_proxy, which get the request with the token.
	httpcaddyfile.RegisterDirectiveOrder("token_inject", httpcaddyfile.After, "templates")
}
