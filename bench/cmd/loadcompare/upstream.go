package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/oidcgate/caddy-oidc/internal/testop"
)

// upstream is the application behind every front end: a Go HTTP server
// answering a fixed 1 KiB body. It counts the requests it gets and those
// whose Authorization header still holds the placeholder; /verify tells
// whether the request carried a token the provider issued.
type upstream struct {
	op           *testop.Provider
	body         []byte
	requests     atomic.Int64
	placeholders atomic.Int64
}

// verdict is the upstream's /verify answer. It says whether tokens were
// valid, never what they were.
type verdict struct {
	AuthorizationValid       bool   `json:"authorization_valid"`       // "Bearer <a token the provider issued>"
	AuthorizationPlaceholder bool   `json:"authorization_placeholder"` // the placeholder arrived as is
	ForwardedTokenValid      bool   `json:"forwarded_token_valid"`     // X-Auth-Request-Access-Token (C)
	ForwardedUser            string `json:"forwarded_user"`            // X-Auth-Request-User (C)
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.requests.Add(1)
	auth := r.Header.Get("Authorization")
	if strings.Contains(auth, placeholder) {
		u.placeholders.Add(1)
	}
	if r.URL.Path == "/verify" {
		tok, ok := strings.CutPrefix(auth, "Bearer ")
		v := verdict{
			AuthorizationValid:       ok && u.op.ValidAccessToken(tok),
			AuthorizationPlaceholder: strings.Contains(auth, placeholder),
			ForwardedTokenValid:      u.op.ValidAccessToken(r.Header.Get("X-Auth-Request-Access-Token")),
			ForwardedUser:            r.Header.Get("X-Auth-Request-User"),
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(u.body)))
	_, _ = w.Write(u.body)
}

// quiesce waits until no request has arrived for 200 ms (at most 5 s).
func (u *upstream) quiesce(ctx context.Context) {
	deadline := time.Now().Add(5 * time.Second)
	for n := u.requests.Load(); time.Now().Before(deadline) && ctx.Err() == nil; {
		time.Sleep(200 * time.Millisecond)
		m := u.requests.Load()
		if m == n {
			return
		}
		n = m
	}
}

func (b *bench) startUpstream() (stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b.up = &upstream{op: b.op, body: []byte(strings.Repeat("0123456789abcdef", 64))}
	b.upAddr = ln.Addr().String()
	srv := &http.Server{Handler: b.up, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return func() { _ = srv.Close() }, nil
}

// signIn walks the sign-in a browser makes: a page navigation to the front
// end is sent to the provider, which approves at once and redirects to the
// callback, which sets the session cookie and redirects back to the page,
// which the upstream serves. It returns the Cookie header the browser would
// send from then on.
func signIn(ctx context.Context, base, issuer string) (string, error) {
	jar, err := cookiejar.New(nil)
	if err != nil {
		return "", err
	}
	sawProvider := false
	c := &http.Client{
		Jar:     jar,
		Timeout: 15 * time.Second,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if strings.HasPrefix(req.URL.String(), issuer+"/") {
				sawProvider = true
			}
			if len(via) > 10 {
				return fmt.Errorf("more than 10 redirects")
			}
			return nil
		},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/", nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Accept", "text/html,application/xhtml+xml")
	resp, err := c.Do(req)
	if err != nil {
		return "", fmt.Errorf("sign-in: %w", err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !sawProvider || resp.Request.URL.Path != "/" {
		return "", fmt.Errorf("sign-in ended at %s with %s (provider visited: %v): %.300s",
			resp.Request.URL, resp.Status, sawProvider, body)
	}
	u, _ := url.Parse(base)
	var parts []string
	for _, ck := range jar.Cookies(u) {
		parts = append(parts, ck.Name+"="+ck.Value)
	}
	if len(parts) == 0 {
		return "", errNoSession
	}
	return strings.Join(parts, "; "), nil
}

func decodeJSON(r io.Reader, v any) error {
	return json.NewDecoder(io.LimitReader(r, 1<<20)).Decode(v)
}
