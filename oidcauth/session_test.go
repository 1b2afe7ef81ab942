package oidcauth

import (
	"bytes"
	"testing"
)

// FuzzUnmarshalSession: a session record is read from storage or from a
// cookie that only the handler's keys open, but its decoder must hold on
// any bytes without panicking, and whatever it accepts must survive being
// written and read again unchanged (a refresh or an idle touch rewrites
// every session it loaded).
func FuzzUnmarshalSession(f *testing.F) {
	f.Fuzz(func(t *testing.T, record []byte) {
		s, err := unmarshalSession(record)
		if err != nil {
			if s != nil {
				t.Fatalf("unmarshalSession returned a session with error %v", err)
			}
			return
		}
		again, err := s.marshal()
		if err != nil {
			t.Fatalf("marshal of a decoded session: %v", err)
		}
		s2, err := unmarshalSession(again)
		if err != nil {
			t.Fatalf("a re-marshalled session does not decode: %v\nrecord %q", err, again)
		}
		for _, c := range []struct {
			name      string
			got, want string
		}{
			{"subject", s2.subject, s.subject},
			{"sid", s2.sid, s.sid},
			{"ID token", s2.rawIDToken, s.rawIDToken},
			{"access token", s2.accessToken, s.accessToken},
			{"refresh token", s2.refreshToken, s.refreshToken},
			{"sign-in ID", s2.signInID, s.signInID},
		} {
			if c.got != c.want {
				t.Fatalf("%s: %q after a round trip, was %q", c.name, c.got, c.want)
			}
		}
		if !s2.createdAt.Equal(s.createdAt) || !s2.lastSeen.Equal(s.lastSeen) || !s2.tokenExpiry.Equal(s.tokenExpiry) {
			t.Fatalf("times after a round trip: %v %v %v, were %v %v %v",
				s2.createdAt, s2.lastSeen, s2.tokenExpiry, s.createdAt, s.lastSeen, s.tokenExpiry)
		}
		if !bytes.Equal(s2.claimsJSON, s.claimsJSON) || len(s2.claims) != len(s.claims) {
			t.Fatalf("claims after a round trip: %s, were %s", s2.claimsJSON, s.claimsJSON)
		}
		// The written form is canonical: writing it again changes nothing.
		if third, _ := s2.marshal(); !bytes.Equal(third, again) {
			t.Fatalf("marshal is not stable:\n%q\n%q", again, third)
		}
	})
}
