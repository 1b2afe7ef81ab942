// Command demo-api is the upstream API of the caddy-oidc demo. It checks the
// bearer token each request carries against the OpenID provider's userinfo
// endpoint and answers, as JSON, whether the token was valid, whom it
// belongs to, and what else the request brought:
//
//	{"valid": true, "sub": "demo-user", "email": "demo@example.com", "path": "/api/whoami",
//	 "bearer": {"placeholder": false, "format": "opaque", "length": 120},
//	 "forwarded_email": "demo@example.com", "id_token_forwarded": true, "id_token_sub": "demo-user",
//	 "headers": ["Accept", "Authorization", ...]}
//	{"valid": false, "error": "no bearer token", "path": "/api/whoami", ...}
//
// "bearer" describes the token without quoting it: whether it is still a
// placeholder ("<<...>>", which Caddy's token_inject did not replace), and
// its shape and length. It never echoes, stores or logs the token, the
// Authorization header or any other header's value but X-User-Email, so
// the demo page can show its answers to show that the token worked without
// ever seeing it.
//
// Usage:
//
//	demo-api [-addr localhost:9999] [-issuer http://localhost:9998]
//
// The provider's userinfo endpoint is discovered on first use and discovery is
// retried until it succeeds, so the API and the provider may start in any
// order.
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", "localhost:9999", "listen address")
	issuer := flag.String("issuer", "http://localhost:9998", "the OpenID provider's issuer URL")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "unexpected arguments: %s\n", strings.Join(flag.Args(), " "))
		flag.Usage()
		os.Exit(2)
	}

	api := &api{
		issuer: strings.TrimSuffix(*issuer, "/"),
		client: &http.Client{Timeout: 5 * time.Second},
	}
	srv := &http.Server{Addr: *addr, Handler: api, ReadHeaderTimeout: 10 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()

	log.Printf("demo API on http://%s, checking bearer tokens with %s", *addr, api.issuer)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		log.Fatalf("demo-api: %v", err)
	}
}

// api answers every request, with 200 and the verdict on its bearer token.
type api struct {
	issuer string
	client *http.Client

	mu       sync.Mutex
	userinfo string // the discovered userinfo_endpoint; "" until discovery succeeds
}

// answer is the whole response body: never the token itself.
type answer struct {
	Valid bool   `json:"valid"`
	Sub   string `json:"sub,omitempty"`
	Email string `json:"email,omitempty"`
	Error string `json:"error,omitempty"`
	Path  string `json:"path"`

	// Bearer describes the Authorization header's bearer token, if any.
	Bearer *bearerShape `json:"bearer,omitempty"`

	// What Caddy forwarded besides the token (see examples/Caddyfile): the
	// X-User-Email header's value, whether an X-ID-Token (a JWT) came
	// along, and the sub in that JWT's payload, read without verifying it.
	// The ID token is not echoed either, to keep the answer small.
	ForwardedEmail   string `json:"forwarded_email,omitempty"`
	IDTokenForwarded bool   `json:"id_token_forwarded"`
	IDTokenSub       string `json:"id_token_sub,omitempty"`

	// Headers names every request header that arrived, sorted; no values.
	Headers []string `json:"headers"`
}

// bearerShape is what may be said about a bearer token without revealing it.
type bearerShape struct {
	// Placeholder is true when the token is still a "<<...>>" placeholder:
	// nothing swapped the user's access token in.
	Placeholder bool `json:"placeholder"`
	// Format is "jwt" for a compact JWT, else "opaque".
	Format string `json:"format"`
	Length int    `json:"length"`
}

func (a *api) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	idToken := r.Header.Get("X-ID-Token")
	ans := answer{
		Path:             r.URL.Path,
		ForwardedEmail:   r.Header.Get("X-User-Email"),
		IDTokenForwarded: isJWT(idToken),
		IDTokenSub:       jwtSubject(idToken),
		Headers:          headerNames(r.Header),
	}
	token, ok := bearer(r.Header.Get("Authorization"))
	switch {
	case !ok:
		ans.Error = "no bearer token"
	case isPlaceholder(token):
		ans.Bearer = &bearerShape{Placeholder: true, Format: "opaque", Length: len(token)}
		ans.Error = "the bearer token is a placeholder, not an access token"
	default:
		ans.Bearer = &bearerShape{Format: "opaque", Length: len(token)}
		if isJWT(token) {
			ans.Bearer.Format = "jwt"
		}
		if claims, err := a.check(r.Context(), token); err != nil {
			ans.Error = err.Error()
		} else {
			ans.Valid, ans.Sub, ans.Email = true, claims.Sub, claims.Email
		}
	}
	// The log line names the request and the verdict, never the token.
	log.Printf("%s %s: valid=%t sub=%q %s", r.Method, r.URL.Path, ans.Valid, ans.Sub, ans.Error)

	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(ans)
}

// isPlaceholder tells whether token is a "<<NAME>>" placeholder string,
// such as token_inject's default <<APPSMITH_USER_OAUTH2_ACCESS_TOKEN>>.
func isPlaceholder(token string) bool {
	return len(token) > 4 && strings.HasPrefix(token, "<<") && strings.HasSuffix(token, ">>")
}

// isJWT tells whether s has the shape of a compact JWT.
func isJWT(s string) bool {
	return strings.Count(s, ".") == 2
}

// jwtSubject returns the sub claim of a compact JWT's payload, without
// verifying the JWT, or "" when there is none.
func jwtSubject(s string) string {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return ""
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var claims struct {
		Sub string `json:"sub"`
	}
	if json.Unmarshal(payload, &claims) != nil {
		return ""
	}
	return claims.Sub
}

// headerNames returns the names of h's headers, sorted.
func headerNames(h http.Header) []string {
	names := make([]string, 0, len(h))
	for name := range h {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// bearer returns the token of an "Authorization: Bearer <token>" header.
func bearer(header string) (string, bool) {
	scheme, token, ok := strings.Cut(header, " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return "", false
	}
	return token, true
}

type userinfoClaims struct {
	Sub   string `json:"sub"`
	Email string `json:"email"`
}

// check asks the provider's userinfo endpoint about token. Errors say what
// went wrong without quoting the token.
func (a *api) check(ctx context.Context, token string) (userinfoClaims, error) {
	var claims userinfoClaims
	endpoint, err := a.userinfoEndpoint(ctx)
	if err != nil {
		return claims, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint, nil)
	if err != nil {
		return claims, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	resp, err := a.client.Do(req)
	if err != nil {
		// *url.Error quotes the URL only, which holds no token.
		return claims, fmt.Errorf("calling userinfo: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return claims, fmt.Errorf("userinfo answered %d", resp.StatusCode)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&claims); err != nil || claims.Sub == "" {
		return claims, errors.New("userinfo answered without a subject")
	}
	return claims, nil
}

// userinfoEndpoint returns the provider's userinfo_endpoint, reading the
// discovery document on first use and again after each failure.
func (a *api) userinfoEndpoint(ctx context.Context) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.userinfo != "" {
		return a.userinfo, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.issuer+"/.well-known/openid-configuration", nil)
	if err != nil {
		return "", err
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("provider discovery: %v", err)
	}
	defer resp.Body.Close()
	var doc struct {
		UserinfoEndpoint string `json:"userinfo_endpoint"`
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("provider discovery answered %d", resp.StatusCode)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&doc); err != nil || doc.UserinfoEndpoint == "" {
		return "", errors.New("provider discovery: no userinfo_endpoint")
	}
	a.userinfo = doc.UserinfoEndpoint
	return a.userinfo, nil
}
