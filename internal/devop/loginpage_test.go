package devop_test

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/net/html"
	"golang.org/x/oauth2"

	"github.com/oidcgate/caddy-oidc/internal/devop"
)

// TestLoginPageShowsDemoAccount pins what someone running the demo sees at
// the provider: the username and password to type, inside the login form,
// both on the first visit and when the form comes back after a wrong
// password.
func TestLoginPageShowsDemoAccount(t *testing.T) {
	srv := startProvider(t, devop.Config{})
	rp := newRelyingParty(t, srv, devop.DefaultClientID, devop.DefaultClientSecret)
	authURL := rp.oauth2.AuthCodeURL("state", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))

	resp, err := rp.browser.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	page := readPage(t, resp)
	wantDemoAccount(t, "login page", page)

	// A wrong password shows the form again, with the provider's message
	// and the hint.
	doc := parseHTML(t, page)
	id := attrOf(findNode(doc, func(n *html.Node) bool { return n.Data == "input" && attrOf(n, "name") == "id" }), "value")
	action, _ := resp.Request.URL.Parse(attrOf(findNode(doc, func(n *html.Node) bool { return n.Data == "form" }), "action"))
	again, err := rp.browser.PostForm(action.String(), url.Values{"id": {id}, "username": {devop.DemoUsername}, "password": {"wrong"}})
	if err != nil {
		t.Fatal(err)
	}
	page = readPage(t, again)
	if !strings.Contains(page, "wrong") {
		t.Fatalf("a wrong password did not show the form with the provider's message:\n%s", page)
	}
	wantDemoAccount(t, "login page after a wrong password", page)
}

// wantDemoAccount checks that page's login form, before its username
// field, names the demo user's username and password.
func wantDemoAccount(t *testing.T, what, page string) {
	t.Helper()
	doc := parseHTML(t, page)
	hint := findNode(doc, func(n *html.Node) bool { return attrOf(n, "id") == "demo-account" })
	if hint == nil {
		t.Fatalf("%s has no demo account hint:\n%s", what, page)
	}
	var codes []string
	for n := range hint.Descendants() {
		if n.Type == html.ElementNode && n.Data == "code" {
			codes = append(codes, n.FirstChild.Data)
		}
	}
	if len(codes) != 2 || codes[0] != devop.DemoUsername || codes[1] != devop.DemoPassword {
		t.Errorf("%s: hint shows %q, want username %q and password %q", what, codes, devop.DemoUsername, devop.DemoPassword)
	}
	form := hint.Parent
	for form != nil && form.Data != "form" {
		form = form.Parent
	}
	if form == nil {
		t.Fatalf("%s: the hint is outside the login form:\n%s", what, page)
	}
	username := findNode(form, func(n *html.Node) bool { return n.Data == "input" && attrOf(n, "name") == "username" })
	if username == nil {
		t.Fatalf("%s: the login form lost its username field:\n%s", what, page)
	}
}

func readPage(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %s\n%s", resp.Request.URL.Redacted(), resp.Status, b)
	}
	return string(b)
}

func parseHTML(t *testing.T, page string) *html.Node {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// findNode returns the first element under root, in document order, for
// which match holds.
func findNode(root *html.Node, match func(*html.Node) bool) *html.Node {
	for n := range root.Descendants() {
		if n.Type == html.ElementNode && match(n) {
			return n
		}
	}
	return nil
}

func attrOf(n *html.Node, key string) string {
	if n == nil {
		return ""
	}
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}
