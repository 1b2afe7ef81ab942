package oidcauth

import (
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestFormattedRequestContextShowsNoToken: the request state is the
// request's context, so formatting the context (%v, as a debugging log
// line might) must not print the session's tokens or its sealed cookie.
func TestFormattedRequestContextShowsNoToken(t *testing.T) {
	h := newTestHandler(t, &Handler{})
	s := testSession(time.Now(), 0, 100)
	r := signedInRequest(t, h, s)
	sealed := r.Header.Get("Cookie") // the sealed session: a bearer credential too
	next := &recordingNext{}
	if err := h.ServeHTTP(httptest.NewRecorder(), caddyRequest(r), next); err != nil || next.r == nil {
		t.Fatalf("not authenticated: %v", err)
	}
	text := fmt.Sprintf("%v %+v", next.r.Context(), next.r.Context())
	for _, secret := range []string{s.AccessToken(), s.RefreshToken(), s.RawIDToken(), sealed} {
		if secret != "" && strings.Contains(text, secret) {
			t.Fatalf("formatted context holds a token: %.200s", text)
		}
	}
}
