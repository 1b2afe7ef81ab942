package tokeninject

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/oidcgate/caddy-oidc/internal/caddyreq"
	"github.com/oidcgate/caddy-oidc/internal/testop"
	"github.com/oidcgate/caddy-oidc/oidcauth"
)

// chain is oidc_auth followed by token_inject and a next handler, wired as
// Caddy wires them, with a session from a real sign-in at a test provider.
type chain struct {
	auth   *oidcauth.Handler
	inject *Handler
	next   caddyhttp.HandlerFunc
	cookie []*http.Cookie
	token  string
}

func newChain(tb testing.TB, inject *Handler, next caddyhttp.HandlerFunc) *chain {
	tb.Helper()
	p, err := testop.New(testop.Config{ClientID: "client", IDTokenPadding: 1500, AccessTokenSize: 1200})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(p.Close)
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	tb.Cleanup(cancel)
	c := &chain{
		auth: &oidcauth.Handler{
			ProviderConfig: oidcauth.ProviderConfig{Issuer: p.Issuer(), ClientID: "client", ClientSecret: p.ClientSecret()},
			SessionKeys:    []string{"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="},
		},
		inject: inject,
		next:   next,
	}
	quietly(func() {
		if err := c.auth.Provision(ctx); err != nil {
			tb.Fatal(err)
		}
		if err := c.inject.Provision(ctx); err != nil {
			tb.Fatal(err)
		}
	})
	if err := c.inject.Validate(); err != nil {
		tb.Fatal(err)
	}
	c.signIn(tb, p)
	return c
}

// quietly runs fn with standard error discarded: without a running Caddy
// config, modules log through a development logger on stderr.
func quietly(fn func()) {
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		fn()
		return
	}
	defer devNull.Close()
	stderr := os.Stderr
	os.Stderr = devNull
	defer func() { os.Stderr = stderr }()
	fn()
}

// signIn walks the code flow through the handler and the provider.
func (c *chain) signIn(tb testing.TB, p *testop.Provider) {
	tb.Helper()
	rec := c.serve(httptest.NewRequest(http.MethodGet, "http://example.com/oauth2/login", nil))
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(rec.Header().Get("Location"))
	if err != nil {
		tb.Fatal(err)
	}
	resp.Body.Close()
	cb := httptest.NewRequest(http.MethodGet, resp.Header.Get("Location"), nil)
	for _, ck := range rec.Result().Cookies() {
		cb.AddCookie(ck)
	}
	rec = c.serve(cb)
	if rec.Code != http.StatusSeeOther {
		tb.Fatalf("callback: %d %s", rec.Code, rec.Body)
	}
	for _, ck := range rec.Result().Cookies() {
		if ck.MaxAge >= 0 && strings.HasPrefix(ck.Name, "oidc_session") && !strings.Contains(ck.Name, "_login_") {
			c.cookie = append(c.cookie, ck)
		}
	}
	for _, tok := range p.IssuedTokens() {
		if p.ValidAccessToken(tok) {
			c.token = tok
		}
	}
}

// request returns a signed-in request as Caddy hands it to handlers.
func (c *chain) request(method, target string, body io.Reader) *http.Request {
	r := httptest.NewRequest(method, target, body)
	r.Header.Set("Sec-Fetch-Site", "same-origin") // the app's own request
	for _, ck := range c.cookie {
		r.AddCookie(ck)
	}
	repl := caddy.NewReplacer()
	ctx := context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl)
	ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{})
	return r.WithContext(ctx)
}

func (c *chain) serve(r *http.Request) *httptest.ResponseRecorder {
	if r.Context().Value(caddy.ReplacerCtxKey) == nil {
		ctx := context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer())
		ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{})
		r = r.WithContext(ctx)
	}
	rec := httptest.NewRecorder()
	_ = c.auth.ServeHTTP(rec, r, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		return c.inject.ServeHTTP(w, r, c.next)
	}))
	return rec
}

var noop = caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })

// BenchmarkInjectHeaders is a signed-in request whose Authorization header
// carries the placeholder, through oidc_auth and token_inject to a no-op
// handler; the oidc_auth sub-benchmark is the same request through oidc_auth
// alone, so the difference is what token_inject adds. Each request gets a
// fresh replacer and vars, as in Caddy.
func BenchmarkInjectHeaders(b *testing.B) {
	var got string
	c := newChain(b, &Handler{}, func(w http.ResponseWriter, r *http.Request) error {
		got = r.Header.Get("Authorization")
		return nil
	})
	base := c.request(http.MethodGet, "http://example.com/api/orders", nil)
	base.Header.Set("Authorization", "Bearer "+DefaultPlaceholder)
	base.Header.Set("Accept", "application/json")
	base.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36")
	base.Header.Set("Accept-Language", "en-US,en;q=0.9")
	w := httptest.NewRecorder()
	inject := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		return c.inject.ServeHTTP(w, r, c.next)
	})
	_ = c.auth.ServeHTTP(w, caddyreq.WithContext(base.Clone(base.Context())), inject)
	if got != "Bearer "+c.token {
		b.Fatalf("Authorization = %.30q, want the token", got)
	}
	cookies := base.Header["Cookie"] // oidc_auth takes its cookies out of the request
	for _, bc := range []struct {
		name string
		next caddyhttp.Handler
	}{{"oidc_auth", noop}, {"oidc_auth+token_inject", inject}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				got = ""
				base.Header["Cookie"] = cookies
				_ = c.auth.ServeHTTP(w, caddyreq.WithContext(base), bc.next)
			}
			if bc.name != "oidc_auth" && got != "Bearer "+c.token {
				b.Fatalf("the last request was not substituted: %.30q", got)
			}
		})
	}
}

// jsonBody builds a JSON document of about size bytes with n placeholders
// spread through it.
func jsonBody(size, n int) []byte {
	var buf bytes.Buffer
	buf.WriteString(`{"items":[`)
	filler := strings.Repeat("x", 200)
	for i := 0; buf.Len() < size-300; i++ {
		if i > 0 {
			buf.WriteByte(',')
		}
		fmt.Fprintf(&buf, `{"id":%d,"note":"%s"}`, i, filler)
	}
	buf.WriteString(`]}`)
	out := buf.Bytes()
	// Overwrite n fillers with the placeholder at even spacing.
	for k := 1; k <= n; k++ {
		at := bytes.Index(out[len(out)*k/(n+1):], []byte(filler))
		copy(out[len(out)*k/(n+1)+at:], DefaultPlaceholder)
	}
	return out
}

func benchmarkBody(b *testing.B, size int, limit int64) {
	body := jsonBody(size, 3)
	var n int64
	c := newChain(b, &Handler{In: []string{"body"}, BodyMaxSize: limit}, func(w http.ResponseWriter, r *http.Request) error {
		var err error
		n, err = io.Copy(io.Discard, r.Body)
		return err
	})
	check := c.request(http.MethodPost, "http://example.com/api", bytes.NewReader(body))
	check.Header.Set("Content-Type", "application/json")
	var sink bytes.Buffer
	c.next = func(w http.ResponseWriter, r *http.Request) error { _, err := io.Copy(&sink, r.Body); return err }
	c.serve(check)
	if bytes.Count(sink.Bytes(), []byte(c.token)) != 3 || bytes.Contains(sink.Bytes(), []byte(DefaultPlaceholder)) {
		b.Fatal("body not substituted")
	}
	c.next = func(w http.ResponseWriter, r *http.Request) error {
		var err error
		n, err = io.Copy(io.Discard, r.Body)
		return err
	}
	w := httptest.NewRecorder()
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		return c.inject.ServeHTTP(w, r, c.next)
	})
	rd := bytes.NewReader(body)
	r := c.request(http.MethodPost, "http://example.com/api", rd)
	r.Header.Set("Content-Type", "application/json")
	cookies := r.Header["Cookie"] // oidc_auth takes its cookies out of the request
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		rd.Reset(body)
		r.Body = io.NopCloser(rd)
		r.ContentLength = int64(len(body))
		r.Header["Cookie"] = cookies
		n = 0
		_ = c.auth.ServeHTTP(w, r, next)
	}
	b.StopTimer()
	if want := int64(len(body) + 3*(len(c.token)-len(DefaultPlaceholder))); n != want {
		b.Fatalf("the last request passed on %d body bytes, want %d", n, want)
	}
}

// BenchmarkInjectBody substitutes 3 placeholders in a 1 MiB JSON body held
// in memory (the default body_max_size), through oidc_auth and token_inject.
func BenchmarkInjectBody(b *testing.B) { benchmarkBody(b, 1<<20, 1<<20) }

// BenchmarkInjectBodyStreamed is an 8 MiB body over a 1 MiB limit: it is
// substituted as it streams, and memory per request stays that of the limit.
func BenchmarkInjectBodyStreamed(b *testing.B) { benchmarkBody(b, 8<<20, 1<<20) }

func testContext(tb testing.TB) caddy.Context {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	tb.Cleanup(cancel)
	return ctx
}
