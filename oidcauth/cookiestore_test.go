package oidcauth

import (
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

const base64URLAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// FuzzSessionCookie: the session cookie and its chunks come from the
// browser, so anyone can send any value. Only a value the handler's keys
// sealed is a session. Anything else, however close to a genuine one, is no
// session and no error: an error would mean the store is unavailable and
// answer 503 to a forged cookie.
//
// Each input is a Cookie header, loaded as it is, and a change of one byte
// in a genuine sealed session, which must then no longer load either: which
// session, which of its cookies, where (counted from the value's end, so
// that the last character, where base64 keeps spare bits, is at 0 whatever
// the session's size), and to what (see changeByte).
func FuzzSessionCookie(f *testing.F) {
	h := newTestHandler(f, &Handler{})
	now := time.Now()
	// Sessions in one cookie, two and four, whose last base64 character
	// has no spare bits, two and four: their sealed lengths are 0, 2 and 1
	// modulo 3. Corpus entries name them by their index.
	type sealed struct {
		cookies []*http.Cookie
		value   []byte // the sealed bytes, all chunks joined and decoded
	}
	var genuine []sealed
	// The padding that gives each size is found, not fixed: the record's
	// own length may change.
	for i, size := range []struct{ pad, cookies, remainder int }{{16, 1, 0}, {3006, 2, 2}, {7001, 4, 1}} {
		var g sealed
		for pad := size.pad; pad < size.pad+12; pad++ {
			r := signedInRequest(f, h, testSession(now, pad, 40))
			if s, err := h.loadSession(r); s == nil || err != nil {
				f.Fatalf("a genuine session does not load: %v", err)
			}
			g = sealed{cookies: r.Cookies()}
			if g.value = sealedBytes(g.cookies); g.value == nil {
				f.Fatal("a genuine session is not base64url")
			}
			if len(g.cookies) == size.cookies && len(g.value)%3 == size.remainder {
				break
			}
		}
		if len(g.cookies) != size.cookies || len(g.value)%3 != size.remainder {
			f.Fatalf("session %d: %d cookies, %d bytes; want %d cookies and %d modulo 3", i, len(g.cookies), len(g.value), size.cookies, size.remainder)
		}
		genuine = append(genuine, g)
	}

	r := caddyRequest(httptest.NewRequest(http.MethodGet, "http://example.com/app", nil))
	f.Fuzz(func(t *testing.T, header string, which, chunk uint8, fromEnd uint16, to byte) {
		r.Header["Cookie"] = []string{header}
		if s, err := h.loadSession(r); s != nil || err != nil {
			t.Fatalf("Cookie %q: session %v, error %v; want neither", header, s, err)
		}

		g := genuine[int(which)%len(genuine)]
		i := int(chunk) % len(g.cookies)
		v := []byte(g.cookies[i].Value)
		j := len(v) - 1 - int(fromEnd)%len(v)
		was := v[j]
		if v[j] = changeByte(was, to); v[j] == was {
			return
		}
		changed := make([]*http.Cookie, len(g.cookies))
		copy(changed, g.cookies)
		changed[i] = &http.Cookie{Name: g.cookies[i].Name, Value: string(v)}
		parts := make([]string, len(changed))
		for k, c := range changed {
			parts[k] = c.Name + "=" + c.Value
		}
		r.Header["Cookie"] = []string{strings.Join(parts, "; ")}
		s, err := h.loadSession(r)
		if s == nil && err == nil {
			return
		}
		t.Fatalf("session %d, %s byte %d of %d changed from %q to %q: session %v, error %v; want neither",
			int(which)%len(genuine), g.cookies[i].Name, j, len(v), was, v[j], s, err)
	})
}

// changeByte returns the byte that c becomes: to itself if it is ASCII
// (any separator, quote or letter a browser might send); otherwise, for a
// base64url character, the character whose six bits are c's XOR the low six
// bits of to. The latter names a change of the bits a decoder sees, which
// reproduces whatever random bits a sealed value was given.
func changeByte(c, to byte) byte {
	if to < 0x80 {
		return to
	}
	k := strings.IndexByte(base64URLAlphabet, c)
	if k < 0 || to&0x3f == 0 {
		return to
	}
	return base64URLAlphabet[k^int(to&0x3f)]
}

// sealedBytes returns the bytes sealed across cookies, as the cookie store
// reads them (its base64 decoding is not strict), or nil.
func sealedBytes(cookies []*http.Cookie) []byte {
	var joined strings.Builder
	for i, c := range cookies {
		v := c.Value
		if i == 0 {
			_, v, _ = parseChunkHeader(v)
		}
		joined.WriteString(v)
	}
	b, err := base64.RawURLEncoding.DecodeString(joined.String())
	if err != nil {
		return nil
	}
	return b
}
