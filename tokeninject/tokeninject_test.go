package tokeninject

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
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
	r2 := h.substitute(nil, r, n, nil, "TOKEN")
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
		r2 := h.substitute(nil, r, needs{body: true}, hb, "a-much-longer-access-token")
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

// TestHeldBodiesStayWithinTheBudget: the bodies held at once never take
// more than body_memory together; past it, a body's remainder streams,
// nothing is lost, and every byte of the budget comes back.
func TestHeldBodiesStayWithinTheBudget(t *testing.T) {
	h := &Handler{In: []string{"body"}, BodyMaxSize: 1 << 20, BodyMemory: 4 << 20}
	if err := h.Provision(testContext(t)); err != nil {
		t.Fatal(err)
	}
	body := strings.Repeat("x", 1<<20)
	var held []*heldBody
	streamed := 0
	for range 8 {
		r := httptest.NewRequest(http.MethodPost, "/", io.NopCloser(strings.NewReader(body)))
		r.ContentLength = -1 // unknown: the worst case for growth
		hb, err := h.holdBody(r)
		if err != nil {
			t.Fatal(err)
		}
		if used := h.budget.used.Load(); used > h.BodyMemory {
			t.Fatalf("bodies held at once take %d bytes, over the budget of %d", used, h.BodyMemory)
		}
		if hb.rest != nil {
			streamed++
		}
		got, _ := io.ReadAll(hb.reader(nil))
		if string(got) != body {
			t.Fatalf("body of %d bytes came out as %d", len(body), len(got))
		}
		held = append(held, hb)
	}
	if streamed < 4 {
		t.Fatalf("%d of 8 bodies streamed past a budget of four, want at least 4", streamed)
	}
	for _, hb := range held {
		hb.release()
	}
	if used := h.budget.used.Load(); used != 0 {
		t.Fatalf("%d bytes of the budget not given back", used)
	}
}

// TestHeldBodyGrowsWithBytesReceived: a body that declares 8 MiB and sends
// a few bytes takes a buffer of its first size, not 8 MiB.
func TestHeldBodyGrowsWithBytesReceived(t *testing.T) {
	h := &Handler{In: []string{"body"}, BodyMaxSize: 8 << 20}
	if err := h.Provision(testContext(t)); err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	r := httptest.NewRequest(http.MethodPost, "/", pr)
	r.ContentLength = 8 << 20
	done := make(chan *heldBody)
	go func() {
		hb, _ := h.holdBody(r)
		done <- hb
	}()
	_, _ = pw.Write([]byte(`{"a":"`))
	if used := h.budget.used.Load(); used > firstBodyBuffer {
		t.Fatalf("after 6 bytes of a body declared 8 MiB, %d bytes are held", used)
	}
	pw.CloseWithError(io.ErrUnexpectedEOF)
	if hb := <-done; hb != nil {
		t.Fatal("a cut-off body was held")
	}
	if used := h.budget.used.Load(); used != 0 {
		t.Fatalf("%d bytes of the budget not given back after an error", used)
	}
}

// TestRedactorCoversEscapedFormsOfTheToken: an upstream's echo can carry
// the token URL-encoded (in either hex case) or JSON-escaped ("\/", or
// \uXXXX for any character an encoder chooses to escape).
func TestRedactorCoversEscapedFormsOfTheToken(t *testing.T) {
	tok := "ab+c/d=e_f-g.h~i"
	rep := redactor([]string{tok, "", "refresh+/="}, DefaultPlaceholder)
	for _, form := range []string{
		tok,
		url.QueryEscape(tok), url.PathEscape(tok), strings.ToLower(url.QueryEscape(tok)),
		`ab+c\/d=e_f-g.h~i`,
		`ab\u002bc\u002fd\u003de\u005ff\u002dg\u002eh\u007ei`,
		`ab\u002Bc\u002Fd\u003De\u005Ff\u002Dg\u002Eh\u007Ei`,
		"refresh+/=", `refresh+\/=`, url.QueryEscape("refresh+/="),
	} {
		in := `{"echo":"` + form + `"}`
		out, ok := rep.Replace(in)
		if !ok || strings.Contains(out, "ab") || strings.Contains(out, "refresh") || !strings.Contains(out, DefaultPlaceholder) {
			t.Errorf("%q -> %q", in, out)
		}
	}
	if redactor([]string{"", ""}, DefaultPlaceholder) != nil {
		t.Error("a redactor without tokens")
	}
}
