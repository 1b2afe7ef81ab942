package tokeninject

import (
	"compress/gzip"
	"compress/zlib"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/klauspost/compress/zstd"

	"github.com/oidcgate/caddy-oidc/internal/substitute"
	"github.com/oidcgate/caddy-oidc/oidcauth"
)

// serveRedacted calls next with a response writer that replaces the
// session's live tokens with the first placeholder in response headers,
// trailers and body, streaming with bounded memory. sessions are the
// request's session before and after a refresh (the same session twice if
// there was none), so the previous access token is redacted too.
func (h *Handler) serveRedacted(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, sessions ...*oidcauth.Session) error {
	var tokens []string
	for _, s := range sessions {
		if s != nil {
			tokens = append(tokens, s.AccessToken(), s.RefreshToken())
		}
	}
	rep := redactor(tokens, h.Placeholders[0])
	if rep == nil {
		return next.ServeHTTP(w, r)
	}
	rw := &redactingWriter{ResponseWriter: w, rep: rep}
	rw.redact = rep.Writer(w)
	err := next.ServeHTTP(rw, r)
	if cerr := rw.finish(); err == nil && rw.wroteHeader {
		err = cerr
	}
	return err
}

// redactor replaces each token, in every form an echo of it can take,
// with the placeholder: as it is; URL-encoded, as in a query, a form body
// or a path, with upper- or lower-case hex; and JSON-escaped, with "\/"
// for "/" or \uXXXX escapes (in upper or lower case) for whatever a JSON
// encoder may escape. It returns nil when there is no token.
func redactor(tokens []string, placeholder string) *substitute.Replacer {
	seen := make(map[string]bool)
	var pairs []string
	add := func(form string) {
		if form != "" && !seen[form] {
			seen[form] = true
			pairs = append(pairs, form, placeholder)
		}
	}
	for _, tok := range tokens {
		if tok == "" {
			continue
		}
		add(tok)
		for _, enc := range []string{url.QueryEscape(tok), url.PathEscape(tok)} {
			add(enc)
			add(lowerHex(enc))
		}
		add(strings.ReplaceAll(tok, "/", `\/`))
		add(jsonEscapeAll(tok, "%04X"))
		add(jsonEscapeAll(tok, "%04x"))
	}
	if len(pairs) == 0 {
		return nil
	}
	return substitute.New(pairs...)
}

// jsonEscapeAll writes every character of s that is not a letter or digit
// as a \u escape, in the given hex format.
func jsonEscapeAll(s, format string) string {
	var b strings.Builder
	for _, c := range s {
		if c < 0x80 && (c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			b.WriteRune(c)
			continue
		}
		if format == "%04X" {
			b.WriteString(`\u` + strings.ToUpper(hex4(c)))
		} else {
			b.WriteString(`\u` + hex4(c))
		}
	}
	return b.String()
}

func hex4(c rune) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[c>>12&0xf], digits[c>>8&0xf], digits[c>>4&0xf], digits[c&0xf]})
}

// errUnreadableEncoding refuses a response the redactor cannot read.
var errUnreadableEncoding = errors.New("the upstream's response is in a content encoding that cannot be checked for tokens")

// redactingWriter redacts tokens in what the handlers after token_inject
// write. It is not a caddyhttp.ResponseWriterWrapper on purpose: that type's
// ReadFrom would copy bodies past the redaction.
//
// token_inject asks upstream for an uncompressed response; a compressed one
// all the same (gzip, deflate or zstd) is decompressed before it is
// redacted and sent on uncompressed, and one in another encoding (br, or
// several) is refused with 502: Go's transport decodes only the gzip it
// asked for itself, and an encoded echo would pass the token unseen.
type redactingWriter struct {
	http.ResponseWriter
	rep         *substitute.Replacer
	redact      *substitute.Writer
	body        io.Writer // where Write goes: redact, or the decoder's pipe
	decoder     *decoder
	refused     bool
	wroteHeader bool
}

func (rw *redactingWriter) redactHeader() {
	hdr := rw.ResponseWriter.Header()
	for k, vs := range hdr {
		for i, v := range vs {
			if nv, ok := rw.rep.Replace(v); ok {
				vs[i] = nv
			}
		}
		hdr[k] = vs
	}
}

func (rw *redactingWriter) WriteHeader(status int) {
	if rw.wroteHeader {
		return
	}
	rw.redactHeader()
	if status < 200 {
		rw.ResponseWriter.WriteHeader(status)
		return
	}
	rw.wroteHeader = true
	hdr := rw.ResponseWriter.Header()
	rw.body = rw.redact
	switch enc := strings.ToLower(strings.TrimSpace(hdr.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip", "x-gzip", "deflate", "zstd":
		rw.decoder = newDecoder(enc, &lockedWriter{w: rw.redact})
		rw.body = rw.decoder
		hdr.Del("Content-Encoding")
	default:
		rw.refuse()
		return
	}
	// Replacing a token changes the length of the body.
	hdr.Del("Content-Length")
	rw.ResponseWriter.WriteHeader(status)
}

// refuse answers 502 in place of a response the redactor cannot read, and
// drops its body.
func (rw *redactingWriter) refuse() {
	rw.refused = true
	hdr := rw.ResponseWriter.Header()
	for k := range hdr {
		delete(hdr, k)
	}
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Cache-Control", "no-store")
	rw.ResponseWriter.WriteHeader(http.StatusBadGateway)
	_, _ = io.WriteString(rw.ResponseWriter, `{"error":"bad_gateway","message":"`+errUnreadableEncoding.Error()+`"}`)
}

func (rw *redactingWriter) Write(p []byte) (int, error) {
	if !rw.wroteHeader {
		rw.WriteHeader(http.StatusOK)
	}
	if rw.refused {
		return len(p), nil
	}
	return rw.body.Write(p)
}

// ReadFrom keeps io.Copy from bypassing Write.
func (rw *redactingWriter) ReadFrom(src io.Reader) (int64, error) {
	return io.Copy(writerOnly{rw}, src)
}

// Flush sends what has been written, except a possible token prefix at the
// end, so streamed responses (server-sent events) keep flowing.
func (rw *redactingWriter) Flush() {
	if !rw.wroteHeader {
		rw.WriteHeader(http.StatusOK)
	}
	if rw.refused {
		return
	}
	flushClient := func() { _ = http.NewResponseController(rw.ResponseWriter).Flush() }
	if rw.decoder != nil {
		// The decoder's goroutine writes to the client too: flushing
		// the client's writer at the same time would race with it.
		rw.decoder.flush(flushClient)
		return
	}
	_ = rw.redact.Flush()
	flushClient()
}

// finish ends the body and redacts the trailers, which the handlers set
// in the header map after the body.
func (rw *redactingWriter) finish() error {
	var err error
	if rw.decoder != nil {
		err = rw.decoder.close()
	}
	if cerr := rw.redact.Close(); err == nil {
		err = cerr
	}
	rw.redactHeader()
	return err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (rw *redactingWriter) Unwrap() http.ResponseWriter { return rw.ResponseWriter }

type writerOnly struct{ io.Writer }

// decoder decompresses what is written to it into dst, as it streams.
type decoder struct {
	pw   *io.PipeWriter
	dst  *lockedWriter
	done chan error
}

func newDecoder(encoding string, dst *lockedWriter) *decoder {
	pr, pw := io.Pipe()
	d := &decoder{pw: pw, dst: dst, done: make(chan error, 1)}
	go func() {
		var src io.Reader
		var err error
		switch encoding {
		case "gzip", "x-gzip":
			src, err = gzip.NewReader(pr)
		case "deflate": // HTTP's deflate is the zlib format
			src, err = zlib.NewReader(pr)
		case "zstd":
			var z *zstd.Decoder
			if z, err = zstd.NewReader(pr, zstd.WithDecoderConcurrency(1)); err == nil {
				defer z.Close()
				src = z
			}
		}
		if err == nil {
			_, err = io.Copy(dst, src)
		}
		pr.CloseWithError(err) // unblocks the writer if decoding failed
		d.done <- err
	}()
	return d
}

func (d *decoder) Write(p []byte) (int, error) { return d.pw.Write(p) }

func (d *decoder) flush(then func()) { d.dst.flush(then) }

func (d *decoder) close() error {
	_ = d.pw.Close()
	return <-d.done
}

// lockedWriter serializes the decoder's writes and the handler's flushes,
// of the redactor and, after it, of the writers below.
type lockedWriter struct {
	mu sync.Mutex
	w  *substitute.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (l *lockedWriter) flush(then func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	_ = l.w.Flush()
	then()
}
