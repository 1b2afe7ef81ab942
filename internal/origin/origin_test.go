package origin

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestClassifyTrustsOnlyTheSitesOwnRequests(t *testing.T) {
	p, err := NewPolicy([]string{"https://APP.example.com:443"})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		tls     bool
		headers map[string]string
		want    Verdict
	}{
		{"fetch metadata same-origin", true, map[string]string{"Sec-Fetch-Site": "same-origin"}, SameOrigin},
		{"fetch metadata cross-site", true, map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://api.example.com"}, CrossSite},
		{"cross-site even from a configured origin", true, map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://app.example.com"}, CrossSite},
		{"same-site from a configured origin", true, map[string]string{"Sec-Fetch-Site": "same-site", "Origin": "https://app.example.com"}, Allowed},
		{"same-site from a configured origin, by Referer", true, map[string]string{"Sec-Fetch-Site": "same-site", "Referer": "https://app.example.com/page?x=1"}, Allowed},
		{"same-site from another origin", true, map[string]string{"Sec-Fetch-Site": "same-site", "Origin": "https://blog.example.com"}, CrossSite},
		{"same-site naming no origin", true, map[string]string{"Sec-Fetch-Site": "same-site"}, CrossSite},
		{"typed address", true, map[string]string{"Sec-Fetch-Site": "none"}, Unknown},
		{"unknown fetch metadata value", true, map[string]string{"Sec-Fetch-Site": "sideways"}, CrossSite},
		{"no headers at all", true, nil, Unknown},
		{"Origin of the site", true, map[string]string{"Origin": "https://api.example.com"}, SameOrigin},
		{"Origin of the site, default port spelled out", true, map[string]string{"Origin": "https://API.example.com:443"}, SameOrigin},
		{"Origin of the site over http", false, map[string]string{"Origin": "http://api.example.com"}, SameOrigin},
		{"Origin with another scheme", true, map[string]string{"Origin": "http://api.example.com"}, CrossSite},
		{"Origin with another port", true, map[string]string{"Origin": "https://api.example.com:8443"}, CrossSite},
		{"Origin null", true, map[string]string{"Origin": "null"}, CrossSite},
		{"Origin of another site", true, map[string]string{"Origin": "https://evil.example"}, CrossSite},
		{"Origin configured", true, map[string]string{"Origin": "https://app.example.com"}, Allowed},
		{"Referer of the site", true, map[string]string{"Referer": "https://api.example.com/a/b"}, SameOrigin},
		{"Referer of another site", true, map[string]string{"Referer": "https://evil.example/api.example.com"}, CrossSite},
		{"Referer unparsable", true, map[string]string{"Referer": "::::"}, CrossSite},
		{"Origin wins over Referer", true, map[string]string{"Origin": "https://evil.example", "Referer": "https://api.example.com/"}, CrossSite},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/x", nil)
			r.Host = "api.example.com"
			if c.tls {
				r.TLS = &tls.ConnectionState{}
			} else {
				r.TLS = nil
			}
			for k, v := range c.headers {
				r.Header.Set(k, v)
			}
			if got := p.Classify(r); got != c.want {
				t.Fatalf("Classify = %v, want %v", got, c.want)
			}
		})
	}
}

func TestNormalizeRefusesWhatIsNotAnOrigin(t *testing.T) {
	for in, want := range map[string]string{
		"https://App.Example.com":     "https://app.example.com",
		"https://app.example.com/":    "https://app.example.com",
		"http://app.example.com:80":   "http://app.example.com",
		"https://app.example.com:444": "https://app.example.com:444",
		"http://[::1]:8080":           "http://[::1]:8080",
	} {
		if got, err := Normalize(in); err != nil || got != want {
			t.Errorf("Normalize(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "null", "app.example.com", "ftp://app.example.com", "https://app.example.com/path",
		"https://user@app.example.com", "https://app.example.com?x", "javascript:alert(1)"} {
		if _, err := Normalize(bad); err == nil {
			t.Errorf("Normalize(%q) accepted", bad)
		}
	}
	if _, err := NewPolicy([]string{"https://ok.example", "not an origin"}); err == nil {
		t.Error("NewPolicy accepted an invalid origin")
	}
}
