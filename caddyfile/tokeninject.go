package caddyfile

import (
	"strconv"

	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"

	"github.com/oidcgate/caddy-oidc/internal/origin"
	"github.com/oidcgate/caddy-oidc/tokeninject"
)

// parseTokenInject sets up the token_inject handler from Caddyfile tokens.
// Syntax:
//
//	token_inject [<matcher>] {
//		placeholder     <string...>                   # default: <<APPSMITH_USER_OAUTH2_ACCESS_TOKEN>>
//		in              header|query|body...          # default: header
//		origins         <origin...>                   # default: none (the site's own origin only)
//		allow_unknown_origin                          # default: off
//		body_max_size   <size>                        # default: 1MiB
//		body_memory     <size>                        # default: 64MiB
//		body_types      <media-type...>               # default: application/json application/x-www-form-urlencoded text/plain
//		on_missing      reject [<status>]|remove|keep # default: reject 401
//		refresh_skew    <duration>                    # default: 30s
//		redact_response
//	}
//
// With no block, the defaults apply.
func parseTokenInject(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	t := new(tokeninject.Handler)
	h.Next() // directive name
	if h.NextArg() {
		return nil, h.Errf("token_inject: unexpected argument %q; settings go in a block", h.Val())
	}
	for h.NextBlock(0) {
		sub := h.Val()
		switch sub {
		case "placeholder":
			if err := someArgs(h.Dispenser, "token_inject", &t.Placeholders); err != nil {
				return nil, err
			}
		case "in":
			if err := someArgs(h.Dispenser, "token_inject", &t.In); err != nil {
				return nil, err
			}
			for _, in := range t.In {
				if in != "header" && in != "query" && in != "body" {
					return nil, h.Errf("token_inject: in: %q is not header, query or body", in)
				}
			}
		case "origins":
			if err := someArgs(h.Dispenser, "token_inject", &t.Origins); err != nil {
				return nil, err
			}
			if _, err := origin.NewPolicy(t.Origins); err != nil {
				return nil, h.Errf("token_inject: origins: %v", err)
			}
		case "allow_unknown_origin":
			if h.NextArg() {
				return nil, h.Errf("token_inject: allow_unknown_origin takes no arguments, got %q", h.Val())
			}
			t.AllowUnknownOrigin = true
		case "body_max_size":
			var s string
			if err := oneArg(h.Dispenser, "token_inject", &s); err != nil {
				return nil, err
			}
			size, err := humanize.ParseBytes(s)
			if err != nil || size == 0 || size > 1<<40 {
				return nil, h.Errf("token_inject: body_max_size: bad size %q", s)
			}
			t.BodyMaxSize = int64(size)
		case "body_memory":
			var v string
			if err := oneArg(h.Dispenser, "token_inject", &v); err != nil {
				return nil, err
			}
			size, err := humanize.ParseBytes(v)
			if err != nil || size == 0 || size > 1<<40 {
				return nil, h.Errf("token_inject: body_memory: bad size %q", v)
			}
			t.BodyMemory = int64(size)
		case "body_types":
			if err := someArgs(h.Dispenser, "token_inject", &t.BodyTypes); err != nil {
				return nil, err
			}
		case "on_missing":
			args := h.RemainingArgs()
			switch {
			case len(args) == 1 && (args[0] == "reject" || args[0] == "remove" || args[0] == "keep"):
				t.OnMissing = args[0]
			case len(args) == 2 && args[0] == "reject":
				code, err := strconv.Atoi(args[1])
				if err != nil || code < 400 || code > 599 {
					return nil, h.Errf("token_inject: on_missing: bad status code %q (want 400-599)", args[1])
				}
				t.OnMissing, t.MissingStatus = "reject", code
			default:
				return nil, h.Errf("token_inject: on_missing takes reject [<code>], remove or keep, got %q", args)
			}
		case "refresh_skew":
			if err := durationArg(h.Dispenser, "token_inject", &t.RefreshSkew); err != nil {
				return nil, err
			}
		case "redact_response":
			if h.NextArg() {
				return nil, h.Errf("token_inject: redact_response takes no arguments, got %q", h.Val())
			}
			t.RedactResponse = true
		default:
			return nil, h.Errf("token_inject: unknown subdirective %q", sub)
		}
	}
	return t, nil
}
