// Package caddyoidc registers the caddy-oidc modules and Caddyfile
// directives with Caddy. Build Caddy with it using xcaddy:
//
//	xcaddy build --with github.com/oidcgate/caddy-oidc
//
// See the oidcauth package for the oidc_auth handler.
package caddyoidc

import (
	_ "github.com/oidcgate/caddy-oidc/caddyfile"
	_ "github.com/oidcgate/caddy-oidc/oidcauth"
)
