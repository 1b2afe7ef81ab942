package tokeninject

import (
	"bytes"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestQueryPlaceholderIsFoundInEveryEncoding(t *testing.T) {
	rep := queryReplacer([]string{DefaultPlaceholder}, "tok/+=")
	for _, q := range []string{
		"a=" + url.QueryEscape(DefaultPlaceholder),
		"a=%3c%3cAPPSMITH_USER_OAUTH2_ACCESS_TOKEN%3e%3e",
		"a=" + DefaultPlaceholder,
	} {
		got, ok := rep.Replace(q)
		if !ok || got != "a="+url.QueryEscape("tok/+=") {
			t.Errorf("%q -> %q, %v", q, got, ok)
		}
	}
}

func TestSubstituteLeavesOriginalRequestUntouched(t *testing.T) {
	h := &Handler{In: []string{"header", "query"}}
	if err := h.Provision(testContext(t)); err != nil {
		t.Fatal(err)
	}
	r, _ := http.NewRequest(http.MethodGet, "http://x/p?t="+url.QueryEscape(DefaultPlaceholder), nil)
	r.Header.Set("Authorization", "Bearer "+DefaultPlaceholder)
	r.Header.Set("X-Other", "keep")
	n := h.scan(r)
	if !n.header || !n.query {
		t.Fatalf("scan = %+v", n)
	}
	r2 := h.substitute(r, n, nil, "TOKEN")
	if r2.Header.Get("Authorization") != "Bearer TOKEN" || r2.URL.Query().Get("t") != "TOKEN" || r2.Header.Get("X-Other") != "keep" {
		t.Fatalf("substituted request: %v %s", r2.Header, r2.URL)
	}
	if r.Header.Get("Authorization") != "Bearer "+DefaultPlaceholder || r.URL.Query().Get("t") != DefaultPlaceholder {
		t.Fatalf("the original request changed: %v %s", r.Header, r.URL)
	}
}

func TestHeldBodyKeepsExactContentLength(t *testing.T) {
	h := &Handler{In: []string{"body"}}
	if err := h.Provision(testContext(t)); err != nil {
		t.Fatal(err)
	}
	body := `{"a":"` + DefaultPlaceholder + `","b":"` + DefaultPlaceholder + `"}`
	for _, length := range []int64{int64(len(body)), -1} {
		r, _ := http.NewRequest(http.MethodPost, "http://x/", strings.NewReader(body))
		r.ContentLength = length
		r.Header.Set("Content-Type", "application/json; charset=utf-8")
		hb, err := h.holdBody(r)
		if err != nil {
			t.Fatal(err)
		}
		r2 := h.substitute(r, needs{body: true}, hb, "a-much-longer-access-token")
		var out bytes.Buffer
		if _, err := out.ReadFrom(r2.Body); err != nil {
			t.Fatal(err)
		}
		want := strings.ReplaceAll(body, DefaultPlaceholder, "a-much-longer-access-token")
		if out.String() != want || r2.ContentLength != int64(len(want)) {
			t.Errorf("length %d: body %q (Content-Length %d), want %q", length, out.String(), r2.ContentLength, want)
		}
	}
}
