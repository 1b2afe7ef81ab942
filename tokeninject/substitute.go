package tokeninject

import (
	"bytes"
	"io"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"

	"github.com/oidcgate/caddy-oidc/internal/substitute"
)

// needs says where the request carries a placeholder (for the body: might).
type needs struct {
	header, query, body bool
	// headerKeys are the headers with placeholders, when few enough to
	// list; otherwise every header is checked again.
	headerKeys [4]string
	nKeys      int
}

func (n needs) any() bool { return n.header || n.query || n.body }

func (n *needs) addHeader(k string) {
	n.header = true
	if n.nKeys < len(n.headerKeys) {
		n.headerKeys[n.nKeys] = k
	}
	n.nKeys++
}

// scan finds where placeholders occur without changing the request.
func (h *Handler) scan(r *http.Request) needs {
	var n needs
	if h.inHeader {
		for k, vs := range r.Header {
			if k == "Cookie" {
				continue // the browser's own state, and the session is in it
			}
			for _, v := range vs {
				if h.probe.Contains(v) {
					n.addHeader(k)
					break
				}
			}
		}
	}
	if h.inQuery && r.URL.RawQuery != "" {
		n.query = h.queryProbe.Contains(r.URL.RawQuery)
	}
	if h.inBody && r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		n.body = h.bodyTypeMatches(r)
	}
	return n
}

func (h *Handler) bodyTypeMatches(r *http.Request) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return false
	}
	for _, t := range h.BodyTypes {
		if strings.EqualFold(t, mt) {
			return true
		}
	}
	return false
}

func isForm(r *http.Request) bool {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return mt == "application/x-www-form-urlencoded"
}

// pairsOf pairs each placeholder with the replacement.
func pairsOf(placeholders []string, replacement string) []string {
	pairs := make([]string, 0, 2*len(placeholders))
	for _, p := range placeholders {
		pairs = append(pairs, p, replacement)
	}
	return pairs
}

// queryReplacer replaces placeholders in URL-encoded text: a browser sends
// "<<X>>" in a query as "%3C%3CX%3E%3E" (and some clients in lower-case
// hex, or raw). The token is URL-encoded to match.
func queryReplacer(placeholders []string, token string) *substitute.Replacer {
	enc := url.QueryEscape(token)
	pairs := make([]string, 0, 6*len(placeholders))
	for _, p := range placeholders {
		e := url.QueryEscape(p)
		pairs = append(pairs, p, enc, e, enc, lowerHex(e), enc)
	}
	return substitute.New(pairs...)
}

// lowerHex lower-cases the hex digits of %XX escapes.
func lowerHex(s string) string {
	b := []byte(s)
	for i := 0; i+2 < len(b); i++ {
		if b[i] == '%' {
			b[i+1], b[i+2] = lowerASCII(b[i+1]), lowerASCII(b[i+2])
		}
	}
	return string(b)
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'F' {
		return c + 'a' - 'A'
	}
	return c
}

// heldBody is a request body read up to body_max_size: all of it (rest is
// nil), or the first part and the unread remainder.
type heldBody struct {
	head []byte
	rest io.ReadCloser
	orig io.ReadCloser
	form bool
	// charged is what head's buffer took of the handler's budget; release
	// gives it back.
	charged int64
	budget  *bodyBudget
}

// Growth of a held body's buffer: it starts small and doubles as bytes
// arrive, up to body_max_size (plus one byte, to see whether there is
// more).
const firstBodyBuffer = 16 << 10

// holdBody reads a body up to body_max_size whole, so its placeholders can
// be counted and an exact Content-Length sent. Memory grows with the bytes
// that actually arrive, never with what Content-Length declares (a client
// can declare 8 MiB and send nothing), and every buffer is charged to the
// handler's budget for all bodies held at once. A body known to be longer
// than the limit is not held at all but substituted as it streams; so is
// the rest of one whose buffer the budget cannot grow: what was read is
// kept, the rest streams.
func (h *Handler) holdBody(r *http.Request) (*heldBody, error) {
	hb := &heldBody{orig: r.Body, form: isForm(r), budget: h.budget}
	limit := h.BodyMaxSize
	if r.ContentLength > limit {
		hb.rest = r.Body
		return hb, nil
	}
	for int64(len(hb.head)) <= limit {
		if len(hb.head) == cap(hb.head) {
			// Double, or with a declared length quadruple (fewer copies
			// of a body that keeps coming), up to the declared length: the
			// buffer is never more than four times what arrived.
			grow := int64(2)
			if r.ContentLength >= 0 {
				grow = 4
			}
			size := min(max(grow*int64(cap(hb.head)), firstBodyBuffer), limit+1)
			if r.ContentLength >= 0 {
				size = min(size, r.ContentLength+1) // no more than declared, to find the end
			}
			if !hb.budget.take(size) {
				hb.rest = r.Body // the budget is spent: stream the rest
				return hb, nil
			}
			grown := make([]byte, len(hb.head), size)
			copy(grown, hb.head)
			hb.budget.give(hb.charged)
			hb.head, hb.charged = grown, size
		}
		n, err := r.Body.Read(hb.head[len(hb.head):cap(hb.head)])
		hb.head = hb.head[:len(hb.head)+n]
		if err == io.EOF {
			return hb, nil
		}
		if err != nil {
			hb.release()
			return nil, err
		}
	}
	hb.rest = r.Body
	return hb, nil
}

// release gives the buffer's share of the budget back, once the request is
// done with it.
func (hb *heldBody) release() {
	if hb != nil && hb.charged > 0 {
		hb.budget.give(hb.charged)
		hb.charged = 0
	}
}

// bodyBudget bounds the bytes that held bodies take at once.
type bodyBudget struct {
	limit int64
	used  atomic.Int64
}

func (b *bodyBudget) take(n int64) bool {
	for {
		used := b.used.Load()
		if used+n > b.limit {
			return false
		}
		if b.used.CompareAndSwap(used, used+n) {
			return true
		}
	}
}

func (b *bodyBudget) give(n int64) { b.used.Add(-n) }

// mayContain reports whether the body may carry a placeholder: certainly
// when only part of it was read.
func (hb *heldBody) mayContain(h *Handler) bool {
	if hb.rest != nil {
		return true
	}
	if hb.form {
		return h.queryProbe.ContainsBytes(hb.head)
	}
	return h.probe.ContainsBytes(hb.head)
}

// restore puts the held body back unchanged.
func (hb *heldBody) restore(r *http.Request) *http.Request {
	r2 := shallowCopy(r)
	r2.Body = hb.reader(nil)
	return r2
}

// reader returns the body with replacements applied by rep (nil: none).
func (hb *heldBody) reader(rep *substitute.Replacer) io.ReadCloser {
	var src io.Reader = bytes.NewReader(hb.head)
	if hb.rest != nil {
		src = io.MultiReader(src, hb.rest)
	}
	if rep != nil {
		src = rep.Reader(src)
	}
	return readCloser{src, hb.orig}
}

type readCloser struct {
	io.Reader
	io.Closer
}

// substitute returns a copy of r with the token in place of placeholders.
// The original request is left alone: placeholders that later handlers
// read, such as {http.request.header.*} and {http.request.uri}, and the
// access log, refer to it and so never show the token.
//
// r2, if not nil, is where the copy goes (to allocate it together with
// something else).
func (h *Handler) substitute(r2, r *http.Request, n needs, body *heldBody, token string) *http.Request {
	if r2 == nil {
		r2 = new(http.Request)
	}
	*r2 = *r
	streamed := body != nil && body.rest != nil
	if n.header || body != nil || h.RedactResponse {
		// A map of its own; value slices stay shared and are only ever
		// replaced, never changed in place.
		r2.Header = maps.Clone(r.Header)
	}
	if n.header {
		if n.nKeys <= len(n.headerKeys) {
			for _, k := range n.headerKeys[:n.nKeys] {
				h.replaceHeader(r2.Header, k, token)
			}
		} else {
			for k := range r2.Header {
				if k != "Cookie" {
					h.replaceHeader(r2.Header, k, token)
				}
			}
		}
	}
	if n.query {
		u := *r.URL
		u.RawQuery, _ = queryReplacer(h.Placeholders, token).Replace(u.RawQuery)
		r2.URL = &u
	}
	if body != nil {
		var rep *substitute.Replacer
		if n.body {
			if body.form {
				rep = queryReplacer(h.Placeholders, token)
			} else {
				rep = substitute.New(pairsOf(h.Placeholders, token)...)
			}
		}
		if !streamed {
			// Whole body in memory: count what the substitution adds for
			// an exact Content-Length, then substitute as it is read.
			r2.ContentLength = int64(len(body.head))
			if rep != nil {
				_, delta := rep.Count(body.head)
				r2.ContentLength += int64(delta)
			}
			r2.Body = body.reader(rep)
			r2.Header.Del("Content-Length")
		} else {
			r2.Body = body.reader(rep)
			r2.ContentLength = -1
			r2.Header.Del("Content-Length")
		}
		r2.GetBody = nil
	}
	if h.RedactResponse {
		// Redaction needs the upstream's response uncompressed: ask for
		// identity (without the header, Go's transport would ask for gzip).
		r2.Header.Set("Accept-Encoding", "identity")
	}
	return r2
}

// replaceHeader puts the token in place of placeholders in the values of
// hdr[k], in a new slice: the old one is shared with the original request.
func (h *Handler) replaceHeader(hdr http.Header, k, token string) {
	vs := hdr[k]
	var out []string
	for i, v := range vs {
		nv, ok := h.replaceToken(v, token)
		if !ok {
			continue
		}
		if out == nil {
			out = append([]string(nil), vs...)
		}
		out[i] = nv
	}
	if out != nil {
		hdr[k] = out
	}
}

// replaceToken replaces the placeholders in s, reusing the result of an
// earlier request of the session that sent the same value.
func (h *Handler) replaceToken(s, token string) (string, bool) {
	if !h.probe.Contains(s) {
		return s, false
	}
	if out, ok := h.values.get(s, token); ok {
		return out, true
	}
	out, _ := substitute.New(pairsOf(h.Placeholders, token)...).Replace(s)
	if len(s) <= maxCachedValue {
		h.values.put(s, token, out)
	}
	return out, true
}

// maxCachedValue bounds the header values kept with the token put in.
const maxCachedValue = 256

// shallowCopy copies the request struct; maps and the URL stay shared until
// replaced.
func shallowCopy(r *http.Request) *http.Request {
	r2 := new(http.Request)
	*r2 = *r
	return r2
}
