package tokeninject

import (
	"io"
	"net/http"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/oidcgate/caddy-oidc/internal/substitute"
	"github.com/oidcgate/caddy-oidc/oidcauth"
)

// serveRedacted calls next with a response writer that replaces the
// session's live access and refresh tokens with the first placeholder in
// response headers and body, streaming with bounded memory.
func (h *Handler) serveRedacted(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, s *oidcauth.Session) error {
	pairs := make([]string, 0, 4)
	for _, tok := range []string{s.AccessToken(), s.RefreshToken()} {
		if tok != "" {
			pairs = append(pairs, tok, h.Placeholders[0])
		}
	}
	if len(pairs) == 0 {
		return next.ServeHTTP(w, r)
	}
	rep := substitute.New(pairs...)
	rw := &redactingWriter{ResponseWriter: w, rep: rep, body: rep.Writer(w)}
	err := next.ServeHTTP(rw, r)
	if cerr := rw.body.Close(); err == nil && rw.wroteHeader {
		err = cerr
	}
	return err
}

// redactingWriter redacts tokens in what the handlers after token_inject
// write. It is not a caddyhttp.ResponseWriterWrapper on purpose: that type's
// ReadFrom would copy bodies past the redaction.
type redactingWriter struct {
	http.ResponseWriter
	rep         *substitute.Replacer
	body        *substitute.Writer
	wroteHeader bool
}

func (rw *redactingWriter) WriteHeader(status int) {
	if rw.wroteHeader {
		return
	}
	hdr := rw.ResponseWriter.Header()
	for k, vs := range hdr {
		for i, v := range vs {
			if nv, ok := rw.rep.Replace(v); ok {
				vs[i] = nv
			}
		}
		hdr[k] = vs
	}
	if status >= 200 {
		// Replacing a token changes the length of the body.
		hdr.Del("Content-Length")
		rw.wroteHeader = true
	}
	rw.ResponseWriter.WriteHeader(status)
}

func (rw *redactingWriter) Write(p []byte) (int, error) {
	if !rw.wroteHeader {
		rw.WriteHeader(http.StatusOK)
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
	_ = rw.body.Flush()
	_ = http.NewResponseController(rw.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (rw *redactingWriter) Unwrap() http.ResponseWriter { return rw.ResponseWriter }

type writerOnly struct{ io.Writer }
