package caddyfile

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/oidcgate/caddy-oidc/oidcauth"
	_ "github.com/oidcgate/caddy-oidc/tokeninject"
)

var update = flag.Bool("update", false, "rewrite the JSON half of the golden files")

// TestCaddyfileAdapt adapts each testdata/*.caddyfile.txt (a Caddyfile, a
// line of dashes, the JSON it must produce) and compares the result.
func TestCaddyfileAdapt(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.caddyfile.txt")
	if len(files) == 0 {
		t.Fatal("no golden files")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			input, want, ok := strings.Cut(string(raw), "\n----------\n")
			if !ok {
				t.Fatal("no ---------- separator")
			}
			out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), nil)
			if err != nil {
				t.Fatalf("adapting: %v", err)
			}
			var got bytes.Buffer
			if err := json.Indent(&got, out, "", "\t"); err != nil {
				t.Fatal(err)
			}
			if *update {
				if err := os.WriteFile(f, []byte(input+"\n----------\n"+got.String()+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if strings.TrimSpace(got.String()) != strings.TrimSpace(want) {
				t.Errorf("adapted JSON differs (run go test -update to accept)\ngot:\n%s\nwant:\n%s", got.String(), want)
			}
		})
	}
}

// TestCaddyfileErrors checks that mistakes are refused with a message that
// names the directive and the bad value.
func TestCaddyfileErrors(t *testing.T) {
	cases := []struct{ body, want string }{
		{`oidc_auth`, "issuer is required"},
		{`oidc_auth https://op { client_id x }`, `unexpected argument "https://op"`},
		{`oidc_auth { issuer a b
client_id x }`, "issuer takes exactly one argument, got 2"},
		{`oidc_auth { issuer https://op }`, "client_id is required"},
		{`oidc_auth { issuer https://op
client_id x
client_id y }`, "client_id given twice"},
		{`oidc_auth { issuer https://op
client_id x
bogus 1 }`, `unknown subdirective "bogus"`},
		{`oidc_auth { issuer https://op
client_id x
scopes }`, "scopes takes at least one argument"},
		{`oidc_auth { issuer https://op
client_id x
session_lifetime forever }`, `session_lifetime: bad duration "forever"`},
		{`oidc_auth { issuer https://op
client_id x
unauthenticated sometimes }`, `unauthenticated takes auto`},
		{`oidc_auth { issuer https://op
client_id x
unauthenticated status 200 }`, `bad status code "200"`},
		{`oidc_auth { issuer https://op
client_id x
auth_param prompt }`, "auth_param takes a name and a value, got 1"},
		{`oidc_auth { issuer https://op
client_id x
auth_param prompt login
auth_param prompt none }`, `auth_param "prompt" given twice`},
		{`oidc_auth { issuer https://op
client_id x
session_store redis {
local_cache_ttl sometimes } }`, `local_cache_ttl: want a positive duration or off, got "sometimes"`},
		{`oidc_auth { issuer https://op
client_id x
session_store redis {
local_cache_ttl 1s
local_cache_ttl off } }`, `local_cache_ttl given twice`},
		{`oidc_auth { issuer https://op
client_id x
client_auth secret }`, `client_auth "secret": want one of client_secret_basic`},
		{`oidc_auth { issuer https://op
client_id x
userinfo sometimes }`, `userinfo "sometimes": want on, off or refresh`},
		{`oidc_auth { issuer https://op
client_id x
claim_sources yes }`, `claim_sources takes no arguments`},
		{`oidc_auth { issuer https://op
client_id x
tenants }`, `tenants takes at least one argument`},
		{`oidc_auth { issuer https://op
client_id x
allow staff }`, `allow takes a block, got argument "staff"`},
		{`oidc_auth { issuer https://op
client_id x
allow { } }`, `allow: an empty block`},
		{`oidc_auth { issuer https://op
client_id x
deny { group admins } }`, `deny: unknown condition "group"`},
		{`oidc_auth { issuer https://op
client_id x
allow { email } }`, `allow: email takes at least one address`},
		{`oidc_auth { issuer https://op
client_id x
allow { email_domain } }`, `allow: email_domain takes at least one domain`},
		{`oidc_auth { issuer https://op
client_id x
allow { claim groups } }`, `allow: claim takes a path and at least one value, got 1 arguments`},
		{`oidc_auth { issuer https://op
client_id x
deny { claim_regexp sub a b } }`, `deny: claim_regexp takes a path and a regular expression, got 3 arguments`},
		{`oidc_auth { issuer https://op
client_id x
deny { claim_regexp sub ([a-z } }`, `deny: claim_regexp sub: error parsing regexp`},
		{`oidc_auth { issuer https://op
client_id x
bearer { scope read } }`, `bearer: name the audience of JWT access tokens, or introspect`},
		{`oidc_auth { issuer https://op
client_id x
bearer { introspect yes } }`, `bearer: introspect takes no arguments, got "yes"`},
		{`oidc_auth { issuer https://op
client_id x
bearer { audience api
typ JWT } }`, `bearer: typ "JWT": only at+jwt can be required`},
		{`oidc_auth { issuer https://op
client_id x
bearer { audience api
introspection_cache_ttl soon } }`, `introspection_cache_ttl: bad duration "soon"`},
		{`oidc_auth { issuer https://op
client_id x
bearer { audience api
issuer https://op } }`, `bearer: unknown option "issuer"`},
		{`oidc_auth { issuer https://op
client_id x
bearer { audience }
}`, `audience takes at least one argument`},
		{`oidc_auth { issuer https://op
client_id x
bearer { introspect }
bearer { introspect } }`, `bearer given twice`},
		{`oidc_auth { issuer https://op
client_id x
bearer }`, `bearer: name the audience of JWT access tokens, or introspect`},
		{`oidc_auth { issuer https://op
client_id x
cors_preflight yes }`, `cors_preflight "yes": want on or off`},
		{`token_inject x`, `token_inject: unexpected argument "x"`},
		{`token_inject { in header cookie }`, `token_inject: in: "cookie" is not header, query or body`},
		{`token_inject { body_max_size lots }`, `token_inject: body_max_size: bad size "lots"`},
		{`token_inject { body_memory 0 }`, `token_inject: body_memory: bad size "0"`},
		{`oidc_auth { provider
issuer https://op
client_id x }`, "provider takes a name and an optional label"},
		{`oidc_auth { provider a {
issuer https://op
} }`, "oidc_auth: provider a: client_id is required"},
		{`oidc_auth { provider a {
issuer https://op
client_id x
bogus 1
} }`, `oidc_auth: provider a: unknown subdirective "bogus"`},
		{`oidc_auth { provider a {
issuer https://op
client_id x
client_auth magic
} }`, `oidc_auth: provider a: client_auth "magic"`},
		{`oidc_auth { issuer https://op
client_id x
provider a {
issuer https://op2
client_id y
} }`, "either directly in oidc_auth (one provider) or in provider blocks"},
		{`oidc_auth { issuer https://op
client_id x
allow {
provider
} }`, "allow: provider takes at least one provider name"},
		{`oidc_auth { issuer https://op
client_id x
health_details yes }`, "health_details takes no arguments"},
		{`token_inject { on_missing drop }`, `token_inject: on_missing takes reject`},
		{`token_inject { on_missing reject 200 }`, `token_inject: on_missing: bad status code "200"`},
		{`token_inject { refresh_skew soon }`, `token_inject: refresh_skew: bad duration "soon"`},
		{`token_inject { redact_response yes }`, `token_inject: redact_response takes no arguments`},
		{`token_inject { placeholder }`, `token_inject: placeholder takes at least one argument`},
		{`token_inject { bogus }`, `token_inject: unknown subdirective "bogus"`},
		{`token_inject { origins app.example.com }`, `token_inject: origins: origin "app.example.com": want scheme://host[:port]`},
		{`token_inject { origins }`, `token_inject: origins takes at least one argument`},
		{`token_inject { allow_unknown_origin yes }`, `token_inject: allow_unknown_origin takes no arguments`},
	}
	for _, c := range cases {
		body := strings.ReplaceAll(strings.ReplaceAll(c.body, "{ ", "{\n"), " }", "\n}")
		input := "http://example.com {\n" + body + "\n}\n"
		_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), nil)
		directive, _, _ := strings.Cut(c.body, " ")
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), directive) {
			t.Errorf("%q: error %v, want one naming %s and %q", c.body, err, directive, c.want)
		}
	}
}

// TestClaimMatcherErrors: the oidc_claim matcher wants a claim path and
// at least one value, once per matcher set.
func TestClaimMatcherErrors(t *testing.T) {
	for _, c := range []struct{ matcher, want string }{
		{`@m oidc_claim groups`, `oidc_claim: want a claim path and at least one value, got 1 arguments`},
		{`@m oidc_claim`, `oidc_claim: want a claim path and at least one value, got 0 arguments`},
		{"@m {\n\t\toidc_claim groups a\n\t\toidc_claim roles b\n\t}", `oidc_claim: given twice in one matcher set`},
	} {
		input := "http://example.com {\n\toidc_auth {\n\t\tissuer https://op\n\t\tclient_id x\n\t}\n\t" + c.matcher + "\n\trespond @m 200\n}\n"
		_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want %q", c.matcher, err, c.want)
		}
	}
}
