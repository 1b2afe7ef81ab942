package integration

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/oidcgate/caddy-oidc/internal/testop"
)

// echoingEncoder is an upstream that echoes every token it has seen (the
// current request's, and the previous one's) in its body, in a trailer
// and a header, compressed as the test says whatever the request asked.
type echoingEncoder struct {
	mu             sync.Mutex
	encoding       string
	seen           []string
	acceptEncoding string
}

func (e *echoingEncoder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	e.seen = append(e.seen, strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
	if len(e.seen) > 2 {
		e.seen = e.seen[len(e.seen)-2:]
	}
	seen, enc := strings.Join(e.seen, " and "), e.encoding
	e.acceptEncoding = r.Header.Get("Accept-Encoding")
	e.mu.Unlock()
	body := []byte(fmt.Sprintf(`{"echo":%q}`, seen))
	var buf bytes.Buffer
	switch enc {
	case "gzip":
		zw := gzip.NewWriter(&buf)
		zw.Write(body)
		zw.Close()
	case "deflate":
		zw := zlib.NewWriter(&buf)
		zw.Write(body)
		zw.Close()
	case "zstd":
		zw, _ := zstd.NewWriter(&buf)
		zw.Write(body)
		zw.Close()
	case "br":
		buf.WriteString("\x1b\x00\x00 not really brotli, but no redactor can tell " + seen)
	default:
		buf.Write(body)
	}
	w.Header().Set("Trailer", "X-Echo-Trailer")
	w.Header().Set("X-Echo", seen)
	if enc != "" {
		w.Header().Set("Content-Encoding", enc)
	}
	w.Write(buf.Bytes())
	w.Header().Set("X-Echo-Trailer", seen)
}

// TestRedactionHoldsForEveryResponse: with redact_response, an upstream
// that echoes the token cannot hand it to the browser whatever the
// response's encoding (Go's transport decodes only gzip it asked for
// itself): token_inject asks for identity, decodes gzip, deflate and zstd,
// and refuses other encodings with 502. Trailers are redacted, and so is
// the previous access token right after a refresh.
func TestRedactionHoldsForEveryResponse(t *testing.T) {
	p := newProvider(t, testop.Config{AccessTokenTTL: 3 * time.Second, AccessTokenSize: 200})
	e := &echoingEncoder{}
	up := httptest.NewServer(e)
	t.Cleanup(up.Close)
	routes := fmt.Sprintf("token_inject {\n\t\tredact_response\n\t\trefresh_skew 1s\n\t}\n\treverse_proxy %s", strings.TrimPrefix(up.URL, "http://"))
	s := startSite(t, nil, siteOptions{issuer: p.Issuer(), clientID: p.ClientID(), secret: p.ClientSecret(), routes: routes})
	b := newBrowser(t)
	b.signIn(s, "/")

	call := func() (*http.Response, string) {
		req, _ := http.NewRequest(http.MethodGet, s.url+"/api", nil)
		req.Header.Set("Authorization", "Bearer "+placeholder)
		req.Header.Set("Accept-Encoding", "gzip, deflate, br, zstd")
		tr := &http.Transport{DisableKeepAlives: true, DisableCompression: true}
		req.Header.Set("Cookie", b.cookieHeader(s))
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, string(body)
	}
	check := func(what string, resp *http.Response, body string) {
		t.Helper()
		for _, tok := range accessTokens(p) {
			assertNoSecrets(t, what+" body", body, tok)
			for k, vs := range resp.Header {
				assertNoSecrets(t, what+" header "+k, strings.Join(vs, " "), tok)
			}
			for k, vs := range resp.Trailer {
				assertNoSecrets(t, what+" trailer "+k, strings.Join(vs, " "), tok)
			}
		}
	}
	for _, enc := range []string{"", "gzip", "deflate", "zstd"} {
		e.mu.Lock()
		e.encoding = enc
		e.mu.Unlock()
		resp, body := call()
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, placeholder) || resp.Header.Get("Content-Encoding") != "" {
			t.Fatalf("encoding %q: %d %q (Content-Encoding %q)", enc, resp.StatusCode, body, resp.Header.Get("Content-Encoding"))
		}
		if resp.Trailer.Get("X-Echo-Trailer") == "" {
			t.Errorf("encoding %q: no trailer", enc)
		}
		check("encoding "+enc, resp, body)
		e.mu.Lock()
		if e.acceptEncoding != "identity" {
			t.Errorf("token_inject asked upstream for Accept-Encoding %q, want identity", e.acceptEncoding)
		}
		e.mu.Unlock()
	}
	e.mu.Lock()
	e.encoding = "br"
	e.mu.Unlock()
	resp, body := call()
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("a response in an encoding the redactor cannot read: %d, want 502", resp.StatusCode)
	}
	check("encoding br", resp, body)

	// Right after a refresh the upstream echoes the previous token too.
	e.mu.Lock()
	e.encoding = ""
	e.mu.Unlock()
	p.SetAccessTokenTTL(time.Hour)
	time.Sleep(2100 * time.Millisecond) // the first token is now within refresh_skew
	resp, body = call()
	if p.RefreshCalls() != 1 || resp.StatusCode != http.StatusOK {
		t.Fatalf("refresh: %d calls, status %d", p.RefreshCalls(), resp.StatusCode)
	}
	if strings.Count(body, placeholder) != 2 {
		t.Errorf("after a refresh, the echo of both tokens: %q", body)
	}
	check("after a refresh", resp, body)
}
