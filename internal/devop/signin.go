package devop

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"golang.org/x/net/html"
)

// maxPageSize bounds how much of a login page SignIn reads.
const maxPageSize = 1 << 20

// SignIn signs in at the provider's login form the way a browser would.
//
// It GETs loginPageURL (the URL the provider redirected the browser to, or any
// URL that redirects there, such as the authorization request), fills the
// form's username and password fields, keeps its hidden fields, and posts it.
// Every request goes through client, so its cookie jar and redirect policy
// apply: with the default policy the returned response is the page the
// relying party finally sends the browser to.
//
// A rejected password yields an error carrying the provider's message. The
// caller closes the returned response's body.
func SignIn(client *http.Client, loginPageURL, username, password string) (*http.Response, error) {
	page, err := client.Get(loginPageURL)
	if err != nil {
		return nil, fmt.Errorf("loading login page: %w", err)
	}
	body, err := io.ReadAll(io.LimitReader(page.Body, maxPageSize))
	page.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("reading login page: %w", err)
	}
	if page.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("loading login page %s: status %s", page.Request.URL.Redacted(), page.Status)
	}
	form, err := findLoginForm(string(body))
	if err != nil {
		return nil, fmt.Errorf("login page %s: %w", page.Request.URL.Redacted(), err)
	}

	action, err := page.Request.URL.Parse(form.action)
	if err != nil {
		return nil, fmt.Errorf("login form action %q: %w", form.action, err)
	}
	values := form.values
	values.Set(form.usernameField, username)
	values.Set(form.passwordField, password)

	resp, err := client.PostForm(action.String(), values)
	if err != nil {
		return nil, fmt.Errorf("posting login form: %w", err)
	}
	// The provider answers a wrong password by rendering the form again at
	// the form's own URL; a successful sign-in redirects away from it.
	if resp.StatusCode == http.StatusOK && resp.Request.URL.String() == action.String() {
		again, _ := io.ReadAll(io.LimitReader(resp.Body, maxPageSize))
		resp.Body.Close()
		msg := "login form shown again"
		if f, err := findLoginForm(string(again)); err == nil && f.message != "" {
			msg = f.message
		}
		return nil, fmt.Errorf("sign-in rejected: %s", msg)
	}
	return resp, nil
}

// SubmitForm does what a browser does with a page that posts its first form
// on load (as a relying party may do to send a large id_token_hint to the
// end-session endpoint): it posts the form's named inputs to the form's
// action, resolved against pageURL, through client. The caller closes the
// returned response's body.
func SubmitForm(client *http.Client, pageURL, page string) (*http.Response, error) {
	base, err := url.Parse(pageURL)
	if err != nil {
		return nil, fmt.Errorf("page URL: %w", err)
	}
	forms, err := parseForms(page)
	if err != nil {
		return nil, err
	}
	if len(forms) == 0 {
		return nil, errors.New("page has no form")
	}
	f := forms[0]
	if f.method != "" && !strings.EqualFold(f.method, http.MethodPost) {
		return nil, fmt.Errorf("form method %q, want post", f.method)
	}
	action, err := base.Parse(f.action)
	if err != nil {
		return nil, fmt.Errorf("form action %q: %w", f.action, err)
	}
	// Like a browser, say which origin the form was submitted from.
	req, err := http.NewRequest(http.MethodPost, action.String(), strings.NewReader(f.values.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", base.Scheme+"://"+base.Host)
	return client.Do(req)
}

// htmlForm is what SignIn and SubmitForm need from a form.
type htmlForm struct {
	action        string
	method        string
	values        url.Values // every named input with its value
	usernameField string     // first text or email input, preferring "username"
	passwordField string     // first password input
	message       string     // text of the first non-empty paragraph in the form
}

// findLoginForm returns the first form with username and password fields.
func findLoginForm(page string) (*htmlForm, error) {
	forms, err := parseForms(page)
	if err != nil {
		return nil, err
	}
	for _, f := range forms {
		if f.passwordField != "" && f.usernameField != "" {
			return f, nil
		}
	}
	return nil, errors.New("no login form with username and password fields")
}

// parseForms returns the page's forms in document order.
func parseForms(page string) ([]*htmlForm, error) {
	doc, err := html.Parse(strings.NewReader(page))
	if err != nil {
		return nil, fmt.Errorf("parsing page: %w", err)
	}
	var forms []*htmlForm
	var current *htmlForm
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			switch {
			case n.Data == "form":
				current = &htmlForm{action: attr(n, "action"), method: attr(n, "method"), values: url.Values{}}
				forms = append(forms, current)
			case current != nil && n.Data == "input":
				current.addInput(n)
			case current != nil && n.Data == "p" && current.message == "":
				current.message = strings.TrimSpace(textOf(n))
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
		if n.Type == html.ElementNode && n.Data == "form" {
			current = nil
		}
	}
	walk(doc)
	return forms, nil
}

func (f *htmlForm) addInput(n *html.Node) {
	name := attr(n, "name")
	if name == "" {
		return
	}
	f.values.Set(name, attr(n, "value"))
	switch strings.ToLower(attr(n, "type")) {
	case "password":
		if f.passwordField == "" {
			f.passwordField = name
		}
	case "", "text", "email":
		if f.usernameField == "" || name == "username" {
			f.usernameField = name
		}
	}
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func textOf(n *html.Node) string {
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return b.String()
}
