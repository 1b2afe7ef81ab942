package devop

import (
	"bytes"
	"fmt"
	"html"
	"mime"
	"net/http"
	"strings"
)

// loginPath is where the example provider serves its username/password form,
// both the empty form (GET) and the form shown again after a wrong password
// (POST).
const loginPath = "/login/username"

// demoAccountHint tells whoever runs the demo what to type. It is a div, not
// a paragraph: SignIn reads the form's first paragraph as the provider's
// error message.
var demoAccountHint = fmt.Sprintf(`<div id="demo-account" style="margin-bottom: 1rem; padding: .5rem; background: #eef4ff; border: 1px solid #9bb8ea;">`+
	`Demo account:<br>username <code style="white-space: nowrap;">%s</code><br>password <code style="white-space: nowrap;">%s</code></div>`,
	html.EscapeString(DemoUsername), html.EscapeString(DemoPassword))

// showDemoAccount puts demoAccountHint at the top of the login form. The
// form itself, its fields and its error message stay the example's own, so
// clients that fill it in (SignIn, a browser test) see the same form.
func showDemoAccount(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != loginPath {
			next.ServeHTTP(w, r)
			return
		}
		buf := &bufferedResponse{header: w.Header(), status: http.StatusOK}
		next.ServeHTTP(buf, r)
		body := buf.body.Bytes()
		// The example's template leaves the type to net/http's sniffing.
		contentType := w.Header().Get("Content-Type")
		if contentType == "" {
			contentType = http.DetectContentType(body)
		}
		if mediaType, _, _ := mime.ParseMediaType(contentType); buf.status == http.StatusOK && mediaType == "text/html" {
			body = withDemoAccount(body)
			w.Header().Del("Content-Length")
		}
		w.WriteHeader(buf.status)
		_, _ = w.Write(body)
	})
}

// withDemoAccount inserts the hint right after the first <form ...> tag, or
// returns page unchanged when it has no form.
func withDemoAccount(page []byte) []byte {
	start := bytes.Index(page, []byte("<form"))
	if start < 0 {
		return page
	}
	end := bytes.IndexByte(page[start:], '>')
	if end < 0 {
		return page
	}
	at := start + end + 1
	var b strings.Builder
	b.Grow(len(page) + len(demoAccountHint))
	b.Write(page[:at])
	b.WriteString(demoAccountHint)
	b.Write(page[at:])
	return []byte(b.String())
}

// bufferedResponse holds a response's status and body until the handler is
// done; headers go straight to the real writer.
type bufferedResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header { return b.header }

func (b *bufferedResponse) WriteHeader(status int) { b.status = status }

func (b *bufferedResponse) Write(p []byte) (int, error) { return b.body.Write(p) }
