package main

import (
	"fmt"
	"strings"
)

// frontEnd is one of the configurations compared.
type frontEnd struct {
	key   string // flag and file name
	label string // table row
	kind  frontEndKind
	store string // session_store of oidc_auth (kind pluginFront)
	// cookieFrom (A) is the front end whose session cookies A is sent, so
	// that A parses and forwards the same request as the B it is compared
	// with; A itself ignores them.
	cookieFrom string
	// baseline (B) is the A that B is compared with.
	baseline string
}

type frontEndKind int

const (
	proxyOnly   frontEndKind = iota // A: reverse_proxy alone, the ceiling
	pluginFront                     // B: oidc_auth + token_inject + reverse_proxy
	oauth2Proxy                     // C: forward_auth to oauth2-proxy + reverse_proxy
)

// frontEnds in the order of the table and of the measurements within a
// round: each A next to the B it is compared with.
var frontEnds = []frontEnd{
	{key: "a", label: "A: Caddy `reverse_proxy` alone (ceiling), cookie-store request", kind: proxyOnly, cookieFrom: "b-cookie"},
	{key: "b-cookie", label: "B: `oidc_auth` + `token_inject`, cookie store", kind: pluginFront, store: "cookie", baseline: "a"},
	{key: "a-id", label: "A: Caddy `reverse_proxy` alone (ceiling), session-ID request", kind: proxyOnly, cookieFrom: "b-memory"},
	{key: "b-memory", label: "B: `oidc_auth` + `token_inject`, memory store", kind: pluginFront, store: "memory", baseline: "a-id"},
	{key: "b-redis", label: "B: `oidc_auth` + `token_inject`, Redis store", kind: pluginFront, store: "redis", baseline: "a-id"},
	{key: "c", label: "C: `forward_auth` to oauth2-proxy", kind: oauth2Proxy},
}

// caddyParams are what a Caddyfile needs to know about the run.
type caddyParams struct {
	port         int
	adminAddr    string // "" turns the admin endpoint off
	storageDir   string
	upstreamAddr string
	issuer       string
	clientID     string
	sessionKey   string // base64 AES-256 key, so all B instances share sessions' sealing
	redisAddr    string
	oauth2Addr   string // oauth2-proxy's address (C)
	writeBuffer  string // write_buffer of the transport to the upstream; "": Caddy's default (4 KiB)
}

// upstream is the reverse_proxy to the upstream, indented by tabs.
func (p caddyParams) upstream(tabs string) string {
	if p.writeBuffer == "" {
		return tabs + "reverse_proxy " + p.upstreamAddr + "\n"
	}
	return fmt.Sprintf("%[1]sreverse_proxy %[2]s {\n%[1]s\ttransport http {\n%[1]s\t\twrite_buffer %[3]s\n%[1]s\t}\n%[1]s}\n",
		tabs, p.upstreamAddr, p.writeBuffer)
}

// caddyfile renders the front end's configuration. Every front end runs
// in its own Caddy process with the same global options: no admin
// endpoint (unless a CPU profile is taken), no autosaved config, plain
// HTTP on loopback, and only errors logged, so that logging costs nothing
// in the comparison. The client secret comes from the environment
// (BENCH_OIDC_CLIENT_SECRET) rather than the file.
func (fe frontEnd) caddyfile(p caddyParams) string {
	var b strings.Builder
	admin := "admin off"
	if p.adminAddr != "" {
		admin = "admin " + p.adminAddr
	}
	fmt.Fprintf(&b, `{
	%s
	persist_config off
	auto_https off
	storage file_system %s
	log {
		level ERROR
	}
}

http://:%d {
	bind 127.0.0.1
`, admin, p.storageDir, p.port)
	switch fe.kind {
	case proxyOnly:
		b.WriteString(p.upstream("\t"))
	case pluginFront:
		store := "session_store " + fe.store
		if fe.store == "redis" {
			store = fmt.Sprintf("session_store redis {\n\t\t\taddress %s\n\t\t}", p.redisAddr)
		}
		fmt.Fprintf(&b, `	oidc_auth {
		issuer %s
		client_id %s
		client_secret {env.BENCH_OIDC_CLIENT_SECRET}
		session_keys %s
		%s
	}
	token_inject
%s`, p.issuer, p.clientID, p.sessionKey, store, p.upstream("\t"))
	case oauth2Proxy:
		// The way oauth2-proxy's documentation sets up Caddy: its own
		// endpoints proxied to it, everything else checked with
		// forward_auth, a 401 turned into a sign-in redirect.
		fmt.Fprintf(&b, `	handle /oauth2/* {
		reverse_proxy %[1]s {
			header_up X-Real-IP {remote_host}
			header_up X-Forwarded-Uri {uri}
		}
	}
	handle {
		forward_auth %[1]s {
			uri /oauth2/auth
			copy_headers X-Auth-Request-User X-Auth-Request-Email X-Auth-Request-Access-Token
			@error status 401
			handle_response @error {
				redir * /oauth2/sign_in?rd={uri}
			}
		}
%[2]s	}
`, p.oauth2Addr, p.upstream("\t\t"))
	}
	b.WriteString("}\n")
	return b.String()
}

// oauth2ProxyArgs are oauth2-proxy's flags for front end C: OIDC against
// the test provider with PKCE, the session in its own (split) cookie, and
// the user and access token handed to Caddy in X-Auth-Request-* headers of
// the /oauth2/auth answer. Request logging is off, as Caddy's is.
func oauth2ProxyArgs(addr, issuer, clientID, clientSecret, redirectURL, cookieSecret string) []string {
	return []string{
		"--http-address=" + addr,
		"--provider=oidc",
		"--oidc-issuer-url=" + issuer,
		"--client-id=" + clientID,
		"--client-secret=" + clientSecret,
		"--redirect-url=" + redirectURL,
		"--code-challenge-method=S256",
		"--cookie-secret=" + cookieSecret,
		"--cookie-secure=false",
		"--email-domain=*",
		"--upstream=static://202",
		"--reverse-proxy",
		"--trusted-proxy-ip=127.0.0.1/32",
		"--set-xauthrequest",
		"--pass-access-token",
		"--skip-provider-button",
		"--insecure-oidc-allow-unverified-email",
		"--request-logging=false",
		"--silence-ping-logging",
	}
}
