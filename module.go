// Package caddyoidc registers the caddy-oidc modules and Caddyfile
// directives with Caddy. Build Caddy with it using xcaddy:
//
//	xcaddy build --with github.com/oidcgate/caddy-oidc
//
// See the oidcauth and tokeninject packages for the oidc_auth and
// token_inject handlers.
package caddyoidc

import (
	_ "github.com/oidcgate/caddy-oidc/caddyfile"
	_ "github.com/oidcgate/caddy-oidc/oidcauth"
	_ "github.com/oidcgate/caddy-oidc/tokeninject"
)
