package caddyfile

import (
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/oidcgate/caddy-oidc/internal/provider"
	"github.com/oidcgate/caddy-oidc/internal/rules"
	"github.com/oidcgate/caddy-oidc/oidcauth"
)

// parseOIDCAuth sets up the oidc_auth handler from Caddyfile tokens. Syntax:
//
//	oidc_auth [<matcher>] {
//		issuer               <url>
//		client_id            <id>
//		client_secret        <secret>          # may be {env.NAME} or {file./path}
//		scopes               <scope...>        # default: openid profile email
//		redirect_url         <path|url>        # default: /oauth2/callback
//		auth_param           <name> <value>    # repeatable
//		login_path           <path>            # default: /oauth2/login
//		logout_path          <path>            # default: /oauth2/logout
//		userinfo_path        <path>            # default: /oauth2/userinfo
//		post_logout_redirect <url>
//		cookie_name          <name>            # default: oidc_session
//		cookie_domain        <domain>
//		cookie_path          <path>            # default: /
//		session_lifetime     <duration>        # default: 24h
//		idle_timeout         <duration>        # default: none
//		access_token_lifetime <duration>       # without expires_in; default: none
//		session_keys         <base64-key...>   # default: generated, kept in Caddy's storage
//		unauthenticated      auto|redirect|status [<code>]
//		signing_algs         <alg...>          # default: RS256
//		client_auth          client_secret_basic|client_secret_post|client_secret_jwt|private_key_jwt|none
//		client_key           <pem>             # may be {env.NAME} or {file./path}
//		client_key_file      <path>
//		client_key_id        <kid>
//		client_assertion_audience issuer|<url> # default: the token endpoint
//		userinfo             on|off|refresh    # default: on
//		claim_sources                          # default: off
//		tenants              <tenant-id...>|*  # multi-tenant providers
//		backchannel_logout_path <path>         # default: /oauth2/backchannel-logout
//		frontchannel_logout_path <path>        # default: /oauth2/frontchannel-logout
//		health_path          <path>            # default: /oauth2/health
//		health_details                         # default: off
//		allow {                                # repeatable; lines in a block all hold
//			email        <address...>
//			email_domain <domain...>         # requires email_verified
//			claim        <path> <value...>
//			claim_regexp <path> <regexp>
//			provider     <name...>          # with provider blocks
//		}
//		deny { ... }                           # as allow; any match refuses
//		bearer {
//			audience      <aud...>            # required for JWT access tokens
//			introspect                        # opaque tokens, RFC 7662
//			typ           at+jwt              # RFC 9068 typ required
//			scope         <scope...>          # required scopes
//			introspection_cache_ttl <duration> # default: 1m
//			metadata_path <path>              # default: /.well-known/oauth-protected-resource
//		}
//		cors_preflight       on|off            # default: on
//		session_store        cookie|memory [<max_entries>]|redis {
//			address     <host:port...>        # several: Cluster, or Sentinel with master_name
//			master_name <name>
//			username    <name>
//			password    <secret>              # may be {env.NAME}
//			db          <n>
//			tls         [<server_name>]
//			key_prefix  <prefix>              # default: caddy-oidc:
//			local_cache_ttl <duration>|off    # default: 2s
//		}
//	}
//
// Several providers: instead of issuer, client and the other provider
// options directly in oidc_auth, one block per provider, each taking
// those options (issuer, client_id, client_secret, scopes, auth_param,
// post_logout_redirect, access_token_lifetime, signing_algs, client_auth,
// client_key, client_key_file, client_key_id, client_assertion_audience,
// userinfo, claim_sources, tenants):
//
//	provider <name> [<label>] {
//		issuer    <url>
//		client_id <id>
//		...
//	}
//
// The Redis block also goes with the cookie store, which then keeps its
// back-channel logout revocations in Redis.
func parseOIDCAuth(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	a := new(oidcauth.Handler)
	h.Next() // directive name
	if h.NextArg() {
		return nil, h.Errf("oidc_auth: unexpected argument %q; settings go in a block", h.Val())
	}
	for h.NextBlock(0) {
		sub := h.Val()
		switch sub {
		case "redirect_url":
			if err := oneArg(h.Dispenser, "oidc_auth", &a.RedirectURL); err != nil {
				return nil, err
			}
		case "login_path":
			if err := oneArg(h.Dispenser, "oidc_auth", &a.LoginPath); err != nil {
				return nil, err
			}
		case "logout_path":
			if err := oneArg(h.Dispenser, "oidc_auth", &a.LogoutPath); err != nil {
				return nil, err
			}
		case "userinfo_path":
			if err := oneArg(h.Dispenser, "oidc_auth", &a.UserinfoPath); err != nil {
				return nil, err
			}
		case "cookie_name":
			if err := oneArg(h.Dispenser, "oidc_auth", &a.CookieName); err != nil {
				return nil, err
			}
		case "cookie_domain":
			if err := oneArg(h.Dispenser, "oidc_auth", &a.CookieDomain); err != nil {
				return nil, err
			}
		case "cookie_path":
			if err := oneArg(h.Dispenser, "oidc_auth", &a.CookiePath); err != nil {
				return nil, err
			}
		case "session_lifetime":
			if err := durationArg(h.Dispenser, "oidc_auth", &a.SessionLifetime); err != nil {
				return nil, err
			}
		case "idle_timeout":
			if err := durationArg(h.Dispenser, "oidc_auth", &a.IdleTimeout); err != nil {
				return nil, err
			}
		case "session_keys":
			if err := someArgs(h.Dispenser, "oidc_auth", &a.SessionKeys); err != nil {
				return nil, err
			}
		case "unauthenticated":
			args := h.RemainingArgs()
			switch {
			case len(args) == 1 && (args[0] == "auto" || args[0] == "redirect" || args[0] == "status"):
				a.Unauthenticated = args[0]
			case len(args) == 2 && (args[0] == "auto" || args[0] == "status"):
				code, err := strconv.Atoi(args[1])
				if err != nil || code < 400 || code > 599 {
					return nil, h.Errf("oidc_auth: unauthenticated: bad status code %q (want 400-599)", args[1])
				}
				a.Unauthenticated, a.UnauthenticatedStatus = args[0], code
			default:
				return nil, h.Errf("oidc_auth: unauthenticated takes auto [<code>], redirect or status [<code>], got %q", args)
			}
		case "backchannel_logout_path":
			if err := oneArg(h.Dispenser, "oidc_auth", &a.BackchannelLogoutPath); err != nil {
				return nil, err
			}
		case "frontchannel_logout_path":
			if err := oneArg(h.Dispenser, "oidc_auth", &a.FrontchannelLogoutPath); err != nil {
				return nil, err
			}
		case "allow", "deny":
			rule, err := parseRule(h, sub)
			if err != nil {
				return nil, err
			}
			if sub == "allow" {
				a.Allow = append(a.Allow, rule)
			} else {
				a.Deny = append(a.Deny, rule)
			}
		case "bearer":
			if a.Bearer != nil {
				return nil, h.Err("oidc_auth: bearer given twice")
			}
			b, err := parseBearer(h)
			if err != nil {
				return nil, err
			}
			a.Bearer = b
		case "cors_preflight":
			var v string
			if err := oneArg(h.Dispenser, "oidc_auth", &v); err != nil {
				return nil, err
			}
			if v != "on" && v != "off" {
				return nil, h.Errf("oidc_auth: cors_preflight %q: want on or off", v)
			}
			on := v == "on"
			a.CORSPreflight = &on
		case "session_store":
			if a.SessionStore != nil {
				return nil, h.Err("oidc_auth: session_store given twice")
			}
			store, err := parseSessionStore(h)
			if err != nil {
				return nil, err
			}
			a.SessionStore = store
		case "provider":
			np, err := parseNamedProvider(h)
			if err != nil {
				return nil, err
			}
			a.Providers = append(a.Providers, np)
		case "health_path":
			if err := oneArg(h.Dispenser, "oidc_auth", &a.HealthPath); err != nil {
				return nil, err
			}
		case "health_details":
			if h.NextArg() {
				return nil, h.Errf("oidc_auth: health_details takes no arguments, got %q", h.Val())
			}
			a.HealthDetails = true
		default:
			handled, err := parseProviderOption(h, "oidc_auth", sub, &a.ProviderConfig)
			if err != nil {
				return nil, err
			}
			if !handled {
				return nil, h.Errf("oidc_auth: unknown subdirective %q", sub)
			}
		}
	}
	switch {
	case len(a.Providers) > 0 && a.ProviderConfig.Issuer != "":
		return nil, h.Err("oidc_auth: issuer and client settings go either directly in oidc_auth (one provider) or in provider blocks (several), not both")
	case len(a.Providers) > 0:
	case a.Issuer == "":
		return nil, h.Err("oidc_auth: issuer is required")
	case a.ClientID == "":
		return nil, h.Err("oidc_auth: client_id is required")
	}
	return a, nil
}

// parseNamedProvider reads a provider block: its name, an optional label
// for the chooser page, and the provider options.
func parseNamedProvider(h httpcaddyfile.Helper) (*oidcauth.NamedProvider, error) {
	args := h.RemainingArgs()
	if len(args) < 1 || len(args) > 2 {
		return nil, h.Errf("oidc_auth: provider takes a name and an optional label, got %d arguments", len(args))
	}
	np := &oidcauth.NamedProvider{Name: args[0]}
	if len(args) == 2 {
		np.Label = args[1]
	}
	where := "oidc_auth: provider " + np.Name
	nesting := h.Nesting()
	for h.NextBlock(nesting) {
		handled, err := parseProviderOption(h, where, h.Val(), &np.ProviderConfig)
		if err != nil {
			return nil, err
		}
		if !handled {
			return nil, h.Errf("%s: unknown subdirective %q", where, h.Val())
		}
	}
	if np.Issuer == "" {
		return nil, h.Errf("%s: issuer is required", where)
	}
	if np.ClientID == "" {
		return nil, h.Errf("%s: client_id is required", where)
	}
	return np, nil
}

// parseProviderOption reads the option sub of a provider, in the
// single-provider form or a provider block; it reports false for an
// option that is not one.
func parseProviderOption(h httpcaddyfile.Helper, where, sub string, a *oidcauth.ProviderConfig) (bool, error) {
	switch sub {
	case "issuer":
		if err := oneArg(h.Dispenser, where, &a.Issuer); err != nil {
			return true, err
		}
	case "client_id":
		if err := oneArg(h.Dispenser, where, &a.ClientID); err != nil {
			return true, err
		}
	case "client_secret":
		if err := oneArg(h.Dispenser, where, &a.ClientSecret); err != nil {
			return true, err
		}
	case "scopes":
		if err := someArgs(h.Dispenser, where, &a.Scopes); err != nil {
			return true, err
		}
	case "auth_param":
		args := h.RemainingArgs()
		if len(args) != 2 {
			return true, h.Errf(where+": auth_param takes a name and a value, got %d arguments", len(args))
		}
		if a.AuthParams == nil {
			a.AuthParams = make(map[string]string)
		}
		if _, dup := a.AuthParams[args[0]]; dup {
			return true, h.Errf(where+": auth_param %q given twice", args[0])
		}
		a.AuthParams[args[0]] = args[1]
	case "post_logout_redirect":
		if err := oneArg(h.Dispenser, where, &a.PostLogoutRedirect); err != nil {
			return true, err
		}
	case "access_token_lifetime":
		if err := durationArg(h.Dispenser, where, &a.AccessTokenLifetime); err != nil {
			return true, err
		}
	case "signing_algs":
		if err := someArgs(h.Dispenser, where, &a.SigningAlgs); err != nil {
			return true, err
		}
	case "client_auth":
		if err := oneArg(h.Dispenser, where, &a.ClientAuth); err != nil {
			return true, err
		}
		if !slices.Contains(provider.Methods, a.ClientAuth) {
			return true, h.Errf(where+": client_auth %q: want one of %s", a.ClientAuth, strings.Join(provider.Methods, ", "))
		}
	case "client_key":
		if err := oneArg(h.Dispenser, where, &a.ClientKey); err != nil {
			return true, err
		}
	case "client_key_file":
		if err := oneArg(h.Dispenser, where, &a.ClientKeyFile); err != nil {
			return true, err
		}
	case "client_key_id":
		if err := oneArg(h.Dispenser, where, &a.ClientKeyID); err != nil {
			return true, err
		}
	case "client_assertion_audience":
		if err := oneArg(h.Dispenser, where, &a.ClientAssertionAudience); err != nil {
			return true, err
		}
	case "userinfo":
		if err := oneArg(h.Dispenser, where, &a.Userinfo); err != nil {
			return true, err
		}
		if a.Userinfo != "on" && a.Userinfo != "off" && a.Userinfo != "refresh" {
			return true, h.Errf(where+": userinfo %q: want on, off or refresh", a.Userinfo)
		}
	case "claim_sources":
		if h.NextArg() {
			return true, h.Errf(where+": claim_sources takes no arguments, got %q", h.Val())
		}
		a.ClaimSources = true
	case "tenants":
		if err := someArgs(h.Dispenser, where, &a.Tenants); err != nil {
			return true, err
		}
	default:
		return false, nil
	}
	return true, nil
}

// parseRule reads an allow or deny block: each line a condition, all of
// which must hold.
func parseRule(h httpcaddyfile.Helper, kind string) (rules.Rule, error) {
	var r rules.Rule
	if h.NextArg() {
		return r, h.Errf("oidc_auth: %s takes a block, got argument %q", kind, h.Val())
	}
	nesting := h.Nesting()
	for h.NextBlock(nesting) {
		line := h.Val()
		args := h.RemainingArgs()
		var c rules.Condition
		switch line {
		case "email":
			if len(args) == 0 {
				return r, h.Errf("oidc_auth: %s: email takes at least one address", kind)
			}
			c.Email = args
		case "email_domain":
			if len(args) == 0 {
				return r, h.Errf("oidc_auth: %s: email_domain takes at least one domain", kind)
			}
			c.EmailDomain = args
		case "claim":
			if len(args) < 2 {
				return r, h.Errf("oidc_auth: %s: claim takes a path and at least one value, got %d arguments", kind, len(args))
			}
			c.Claim, c.Values = args[0], args[1:]
		case "provider":
			if len(args) == 0 {
				return r, h.Errf("oidc_auth: %s: provider takes at least one provider name", kind)
			}
			c.Provider = args
		case "claim_regexp":
			if len(args) != 2 {
				return r, h.Errf("oidc_auth: %s: claim_regexp takes a path and a regular expression, got %d arguments", kind, len(args))
			}
			if _, err := regexp.Compile(args[1]); err != nil {
				return r, h.Errf("oidc_auth: %s: claim_regexp %s: %v", kind, args[0], err)
			}
			c.ClaimRegexp, c.Pattern = args[0], args[1]
		default:
			return r, h.Errf("oidc_auth: %s: unknown condition %q (want email, email_domain, claim, claim_regexp or provider)", kind, line)
		}
		r.Conditions = append(r.Conditions, c)
	}
	if len(r.Conditions) == 0 {
		return r, h.Errf("oidc_auth: %s: an empty block", kind)
	}
	return r, nil
}

// parseBearer reads the bearer block.
func parseBearer(h httpcaddyfile.Helper) (*oidcauth.BearerConfig, error) {
	b := new(oidcauth.BearerConfig)
	if h.NextArg() {
		return nil, h.Errf("oidc_auth: bearer takes a block, got argument %q", h.Val())
	}
	nesting := h.Nesting()
	for h.NextBlock(nesting) {
		switch sub := h.Val(); sub {
		case "audience":
			if err := someArgs(h.Dispenser, "oidc_auth", &b.Audience); err != nil {
				return nil, err
			}
		case "introspect":
			if h.NextArg() {
				return nil, h.Errf("oidc_auth: bearer: introspect takes no arguments, got %q", h.Val())
			}
			b.Introspect = true
		case "typ":
			if err := oneArg(h.Dispenser, "oidc_auth", &b.Typ); err != nil {
				return nil, err
			}
			if !strings.EqualFold(b.Typ, "at+jwt") {
				return nil, h.Errf("oidc_auth: bearer: typ %q: only at+jwt can be required", b.Typ)
			}
		case "scope":
			if err := someArgs(h.Dispenser, "oidc_auth", &b.Scopes); err != nil {
				return nil, err
			}
		case "introspection_cache_ttl":
			if err := durationArg(h.Dispenser, "oidc_auth", &b.IntrospectionCacheTTL); err != nil {
				return nil, err
			}
		case "metadata_path":
			if err := oneArg(h.Dispenser, "oidc_auth", &b.MetadataPath); err != nil {
				return nil, err
			}
		default:
			return nil, h.Errf("oidc_auth: bearer: unknown option %q", sub)
		}
	}
	if len(b.Audience) == 0 && !b.Introspect {
		return nil, h.Err("oidc_auth: bearer: name the audience of JWT access tokens, or introspect")
	}
	return b, nil
}

// parseSessionStore reads `session_store <type> [<max_entries>] [{ redis }]`.
func parseSessionStore(h httpcaddyfile.Helper) (*oidcauth.SessionStoreConfig, error) {
	args := h.RemainingArgs()
	if len(args) == 0 {
		return nil, h.Err("oidc_auth: session_store takes cookie, memory or redis")
	}
	store := &oidcauth.SessionStoreConfig{Type: args[0]}
	switch {
	case args[0] == "memory" && len(args) <= 2:
		if len(args) == 2 {
			n, err := strconv.Atoi(args[1])
			if err != nil || n <= 0 {
				return nil, h.Errf("oidc_auth: session_store memory: bad max_entries %q", args[1])
			}
			store.MaxEntries = n
		}
	case (args[0] == "cookie" || args[0] == "redis") && len(args) == 1:
	default:
		return nil, h.Errf("oidc_auth: session_store takes cookie, memory [<max_entries>] or redis, got %q", args)
	}
	nesting := h.Nesting()
	for h.NextBlock(nesting) {
		if store.Type == "memory" {
			return nil, h.Errf("oidc_auth: session_store memory takes no block")
		}
		if store.Redis == nil {
			store.Redis = new(oidcauth.RedisConfig)
		}
		rc := store.Redis
		sub := h.Val()
		switch sub {
		case "address":
			if err := someArgs(h.Dispenser, "oidc_auth", &rc.Addresses); err != nil {
				return nil, err
			}
		case "master_name":
			if err := oneArg(h.Dispenser, "oidc_auth", &rc.MasterName); err != nil {
				return nil, err
			}
		case "username":
			if err := oneArg(h.Dispenser, "oidc_auth", &rc.Username); err != nil {
				return nil, err
			}
		case "password":
			if err := oneArg(h.Dispenser, "oidc_auth", &rc.Password); err != nil {
				return nil, err
			}
		case "db":
			var v string
			if err := oneArg(h.Dispenser, "oidc_auth", &v); err != nil {
				return nil, err
			}
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return nil, h.Errf("oidc_auth: db: bad database number %q", v)
			}
			rc.DB = n
		case "tls":
			rc.TLS = true
			if h.NextArg() {
				rc.TLSServerName = h.Val()
				if h.NextArg() {
					return nil, h.Errf("oidc_auth: tls takes at most a server name, got %q", h.Val())
				}
			}
		case "key_prefix":
			if err := oneArg(h.Dispenser, "oidc_auth", &rc.KeyPrefix); err != nil {
				return nil, err
			}
		case "local_cache_ttl":
			var v string
			if rc.LocalCacheTTL != 0 {
				return nil, h.Errf("oidc_auth: local_cache_ttl given twice")
			}
			if err := oneArg(h.Dispenser, "oidc_auth", &v); err != nil {
				return nil, err
			}
			if v == "off" {
				rc.LocalCacheTTL = -1
				break
			}
			d, err := caddy.ParseDuration(v)
			if err != nil || d <= 0 {
				return nil, h.Errf("oidc_auth: local_cache_ttl: want a positive duration or off, got %q", v)
			}
			rc.LocalCacheTTL = caddy.Duration(d)
		default:
			return nil, h.Errf("oidc_auth: unknown session_store option %q", sub)
		}
	}
	if store.Type == "redis" && store.Redis == nil {
		store.Redis = new(oidcauth.RedisConfig) // localhost:6379
	}
	return store, nil
}

// oneArg reads exactly one argument of the current subdirective into dst,
// refusing a repeated subdirective.
func oneArg(d *caddyfile.Dispenser, dir string, dst *string) error {
	sub := d.Val()
	if *dst != "" {
		return d.Errf("%s: %s given twice", dir, sub)
	}
	args := d.RemainingArgs()
	if len(args) != 1 {
		return d.Errf("%s: %s takes exactly one argument, got %d", dir, sub, len(args))
	}
	*dst = args[0]
	return nil
}

// someArgs reads one or more arguments of the current subdirective.
func someArgs(d *caddyfile.Dispenser, dir string, dst *[]string) error {
	sub := d.Val()
	if *dst != nil {
		return d.Errf("%s: %s given twice", dir, sub)
	}
	args := d.RemainingArgs()
	if len(args) == 0 {
		return d.Errf("%s: %s takes at least one argument", dir, sub)
	}
	*dst = args
	return nil
}

// durationArg reads one duration argument such as 30m, 12h or 7d.
func durationArg(d *caddyfile.Dispenser, dir string, dst *caddy.Duration) error {
	sub := d.Val()
	var s string
	if err := oneArg(d, dir, &s); err != nil {
		return err
	}
	dur, err := caddy.ParseDuration(s)
	if err != nil || dur < 0 {
		return d.Errf("%s: %s: bad duration %q", dir, sub, s)
	}
	*dst = caddy.Duration(dur)
	return nil
}
