package tokeninject

import (
	"io"
	"net/http"
	"net/url"
	"strings"
)

// redirectHeaders are the response headers that make a browser go to, or
// show, a URL: an upstream that builds one from its request (a trailing-slash
// redirect that keeps the query, an open "continue to" parameter) would put
// the token where the browser shows and stores it, and sends it on.
var redirectHeaders = [...]string{"Location", "Content-Location", "Refresh"}

// guardedRequest is a substituted request and the guard of its response.
type guardedRequest struct {
	req   http.Request
	guard redirectGuard
}

// redirectGuard replaces the token with the placeholder in the redirect
// headers of the response to a request that carried the token upstream.
// (With redact_response, redactingWriter does this for every header.)
type redirectGuard struct {
	http.ResponseWriter
	token       string
	placeholder string
	wroteHeader bool
}

// redact rewrites the redirect headers: the token as it is, and URL-escaped
// as an upstream puts it into a query or a path.
func (g *redirectGuard) redact() {
	hdr := g.ResponseWriter.Header()
	for _, k := range redirectHeaders {
		vs := hdr[k]
		for i, v := range vs {
			if nv, ok := redactToken(v, g.token, g.placeholder); ok {
				vs[i] = nv
			}
		}
	}
}

// redactToken replaces the token in v, also in its URL-escaped forms, with
// the URL-escaped placeholder: these headers hold URLs.
func redactToken(v, token, placeholder string) (string, bool) {
	changed := false
	if strings.Contains(v, token) {
		v, changed = strings.ReplaceAll(v, token, url.QueryEscape(placeholder)), true
	}
	if strings.IndexByte(v, '%') >= 0 {
		for _, enc := range [...]string{url.QueryEscape(token), url.PathEscape(token)} {
			for _, form := range [...]string{enc, lowerHex(enc)} {
				if form != token && strings.Contains(v, form) {
					v, changed = strings.ReplaceAll(v, form, url.QueryEscape(placeholder)), true
				}
			}
		}
	}
	return v, changed
}

func (g *redirectGuard) WriteHeader(status int) {
	g.redact()
	if status >= 200 {
		g.wroteHeader = true
	}
	g.ResponseWriter.WriteHeader(status)
}

func (g *redirectGuard) Write(p []byte) (int, error) {
	if !g.wroteHeader {
		g.WriteHeader(http.StatusOK)
	}
	return g.ResponseWriter.Write(p)
}

// ReadFrom writes the header first, then lets the underlying writer copy
// the body its own way (sendfile, for instance).
func (g *redirectGuard) ReadFrom(src io.Reader) (int64, error) {
	if !g.wroteHeader {
		g.WriteHeader(http.StatusOK)
	}
	if rf, ok := g.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(src)
	}
	return io.Copy(g.ResponseWriter, src)
}

// Flush sends the header (redacted) before flushing, as net/http would.
func (g *redirectGuard) Flush() {
	if !g.wroteHeader {
		g.WriteHeader(http.StatusOK)
	}
	_ = http.NewResponseController(g.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (g *redirectGuard) Unwrap() http.ResponseWriter { return g.ResponseWriter }
