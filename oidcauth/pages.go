package oidcauth

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"html/template"
	"net/http"
	"net/url"
	"strings"
)

// writeJSON writes v as an uncacheable JSON response.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"internal"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

var errorTemplate = template.Must(template.New("error").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{{.Title}}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:36em;margin:4em auto;padding:0 1em;color:#222}h1{font-size:1.4em}</style>
</head><body>
<h1>{{.Title}}</h1>
<p>{{.Detail}}</p>
{{if .Retry}}<p><a href="{{.Retry}}">Sign in again</a></p>{{end}}
<p><small>Status {{.Status}}</small></p>
</body></html>
`))

// errorPage answers with a small HTML page, or JSON for clients that ask
// for it. Detail must not contain tokens; it is escaped.
func (h *Handler) errorPage(w http.ResponseWriter, r *http.Request, status int, title, detail string, retry bool) error {
	var retryURL string
	if retry {
		retryURL = h.LoginPath
	}
	hdr := w.Header()
	hdr.Set("Cache-Control", "no-store")
	if prefersJSON(r) {
		body := map[string]string{"error": title, "message": detail}
		if retryURL != "" {
			body["login_url"] = retryURL
		}
		writeJSON(w, status, body)
		return nil
	}
	return writePage(w, status, errorTemplate, "default-src 'none'; style-src 'unsafe-inline'", false, struct {
		Title, Detail, Retry string
		Status               int
	}{title, detail, retryURL, status})
}

// writePage answers with page t, executed with data, under the content
// security policy csp; a page that must not be framed says so the old way
// too (X-Frame-Options), for browsers without frame-ancestors.
func writePage(w http.ResponseWriter, status int, t *template.Template, csp string, denyFraming bool, data any) error {
	hdr := w.Header()
	hdr.Set("Content-Type", "text/html; charset=utf-8")
	hdr.Set("X-Content-Type-Options", "nosniff")
	if denyFraming {
		hdr.Set("X-Frame-Options", "DENY")
	}
	hdr.Set("Content-Security-Policy", csp)
	w.WriteHeader(status)
	return t.Execute(w, data)
}

func prefersJSON(r *http.Request) bool {
	accept := r.Header.Get("Accept")
	return strings.Contains(accept, "application/json") && !strings.Contains(accept, "text/html")
}

var logoutTemplate = template.Must(template.New("logout").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Sign out</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:36em;margin:4em auto;padding:0 1em;color:#222}h1{font-size:1.4em}</style>
</head><body>
<h1>Sign out?</h1>
{{if .Refused}}<p>This sign-out request did not come from this site, so nothing was ended.</p>{{end}}
<form method="post" action="{{.Action}}"><button type="submit">Sign out</button></form>
</body></html>
`))

// logoutConfirmation answers with a page whose button signs out by a POST
// from this site. It may not be framed, so no other page can overlay it
// and trick the user into pressing the button.
func (h *Handler) logoutConfirmation(w http.ResponseWriter, r *http.Request, rd string, status int) error {
	action := h.LogoutPath
	if rd != "/" {
		action += "?rd=" + url.QueryEscape(rd)
	}
	hdr := w.Header()
	hdr.Set("Cache-Control", "no-store")
	if prefersJSON(r) {
		writeJSON(w, status, map[string]string{
			"error":   "confirm_logout",
			"message": "sign out with a POST request from this site",
		})
		return nil
	}
	return writePage(w, status, logoutTemplate, "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'", true, struct {
		Action  string
		Refused bool
	}{action, status != http.StatusOK})
}

const autoPostScript = `document.forms[0].submit()`

var autoPostTemplate = template.Must(template.New("post").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Signing out</title></head>
<body><form method="post" action="{{.Action}}">
{{range .Fields}}<input type="hidden" name="{{.Name}}" value="{{.Value}}">
{{end}}<p>Signing out... <button type="submit">Continue</button></p>
</form><script>` + autoPostScript + `</script></body></html>
`))

// writeAutoPost answers with a page that POSTs form to action at once.
func writeAutoPost(w http.ResponseWriter, action string, form url.Values) error {
	type field struct{ Name, Value string }
	var fields []field
	for k, vs := range form {
		for _, v := range vs {
			fields = append(fields, field{k, v})
		}
	}
	// Only the hash-pinned submit script may run. No form-action: browsers
	// apply it to every redirect after the submission too, and the provider
	// sends the browser on to post_logout_redirect_uri (and some providers
	// through hosts of their own first).
	sum := sha256.Sum256([]byte(autoPostScript))
	hdr := w.Header()
	hdr.Set("Content-Type", "text/html; charset=utf-8")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("Referrer-Policy", "no-referrer")
	hdr.Set("Content-Security-Policy", "default-src 'none'; script-src 'sha256-"+
		base64.StdEncoding.EncodeToString(sum[:])+"'")
	w.WriteHeader(http.StatusOK)
	return autoPostTemplate.Execute(w, struct {
		Action string
		Fields []field
	}{action, fields})
}

var chooserTemplate = template.Must(template.New("chooser").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Sign in</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:36em;margin:4em auto;padding:0 1em;color:#222}h1{font-size:1.4em}ul{list-style:none;padding:0}li{margin:.6em 0}a{display:inline-block;padding:.5em 1em;border:1px solid #888;border-radius:.3em;text-decoration:none;color:inherit}</style>
</head><body>
<h1>Sign in</h1>
{{if .Unknown}}<p>There is no such sign-in option. Choose one of these:</p>{{else}}<p>Choose how to sign in:</p>{{end}}
<ul>{{range .Providers}}<li><a href="{{.LoginURL}}">{{.Label}}</a></li>
{{end}}</ul>
</body></html>
`))

// chooserEntry is one provider on the sign-in chooser page.
type chooserEntry struct {
	Name     string `json:"name"`
	Label    string `json:"label"`
	LoginURL string `json:"login_url"`
}

// chooseProvider answers with the page that lists the providers to sign
// in with, each a link that starts a sign-in there and returns to rd (JSON
// for clients that ask for it). It may not be framed.
func (h *Handler) chooseProvider(w http.ResponseWriter, r *http.Request, rd string, status int) error {
	entries := make([]chooserEntry, 0, len(h.providers))
	for _, p := range h.providers {
		q := url.Values{"provider": {p.name}}
		if rd != "/" {
			q.Set("rd", rd)
		}
		entries = append(entries, chooserEntry{p.name, p.label, h.LoginPath + "?" + q.Encode()})
	}
	hdr := w.Header()
	hdr.Set("Cache-Control", "no-store")
	if prefersJSON(r) {
		writeJSON(w, status, map[string]any{"providers": entries})
		return nil
	}
	return writePage(w, status, chooserTemplate, "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'", true, struct {
		Providers []chooserEntry
		Unknown   bool
	}{entries, status != http.StatusOK})
}
