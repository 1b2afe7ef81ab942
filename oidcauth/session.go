package oidcauth

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	claimset "github.com/oidcgate/caddy-oidc/internal/claims"
)

// Session is a signed-in user's session: who they are (the verified ID
// token) and the tokens the gateway uses on their behalf. A Session is
// immutable once created and may be shared between concurrent requests.
//
// The access and refresh tokens are available to Go code in other modules
// (such as token_inject) through methods; they are never exposed as
// placeholders or variables, and Session's String form names only the subject.
type Session struct {
	id string // server-side stores: the session ID in the cookie
	// signInID names this sign-in, whatever its tokens become: a logout
	// revokes it, which ends a stateless cookie session and any copy of it.
	signInID     string
	subject      string
	sid          string
	rawIDToken   string
	accessToken  string
	refreshToken string
	tokenExpiry  time.Time
	createdAt    time.Time
	lastSeen     time.Time

	// owner is the handler that loaded or created the session and can
	// refresh and save it; provider is the provider it signed in with,
	// named providerName ("" in the single-provider form).
	owner        *Handler
	provider     *oidcProvider
	providerName string

	// subjectKey, sidKey and signInKey stand for the subject, the provider
	// session ID and the sign-in in the store's indexes and revocation
	// lists (see indexKey).
	subjectKey, sidKey, signInKey string

	// record is the sealed record a server-side store loaded the session
	// from: a later write replaces exactly that record, or nothing.
	record []byte

	// userinfoJSON is what the userinfo endpoint (and any claim sources)
	// said of the user, as a JSON object; nil without userinfo.
	userinfoJSON []byte

	// Derived from rawIDToken and userinfoJSON when the session is
	// decoded, not stored.
	claimsJSON []byte
	claims     map[string]any
	userinfo   map[string]any
	// rawIDTokenVar is rawIDToken as the value of the oidc_raw_id_token
	// variable, boxed once rather than on every request.
	rawIDTokenVar any
}

// Subject is the ID token's sub claim.
func (s *Session) Subject() string { return s.subject }

// SessionID is the provider's session ID (the ID token's sid claim), if any.
func (s *Session) SessionID() string { return s.sid }

// RawIDToken is the compact ID token (JWT) as the provider issued it.
func (s *Session) RawIDToken() string { return s.rawIDToken }

// Claims are the ID token's claims. Numbers are json.Number, as the provider
// wrote them. The map is shared: callers must not modify it.
func (s *Session) Claims() map[string]any { return s.claims }

// Userinfo are the claims the userinfo endpoint answered with (and those
// of aggregated and distributed claim sources), empty without userinfo.
// The map is shared: callers must not modify it.
func (s *Session) Userinfo() map[string]any { return s.userinfo }

// UserinfoJSON is Userinfo as a JSON object ("{}" without userinfo).
func (s *Session) UserinfoJSON() []byte {
	if len(s.userinfoJSON) == 0 {
		return emptyObject
	}
	return s.userinfoJSON
}

var emptyObject = []byte("{}")

// ClaimsJSON is the ID token's payload, the claims as the provider wrote them.
// The slice is shared: callers must not modify it.
func (s *Session) ClaimsJSON() []byte { return s.claimsJSON }

// AccessToken is the OAuth2 access token. It must never reach the browser,
// a log line or a placeholder.
func (s *Session) AccessToken() string { return s.accessToken }

// RefreshToken is the OAuth2 refresh token, or "" if the provider issued none.
func (s *Session) RefreshToken() string { return s.refreshToken }

// TokenExpiry is when the access token expires; zero if the provider did not say.
func (s *Session) TokenExpiry() time.Time { return s.tokenExpiry }

// Provider is the name of the provider the user signed in with, when the
// site has several; "" otherwise.
func (s *Session) Provider() string { return s.providerName }

// CreatedAt is when the user signed in.
func (s *Session) CreatedAt() time.Time { return s.createdAt }

// String names the session without revealing any token, so that a session
// accidentally formatted into a log line or placeholder leaks nothing.
func (s *Session) String() string { return "oidc session of " + s.subject }

// GoString is like String, for %#v.
func (s *Session) GoString() string { return s.String() }

type sessionCtxKey struct{}

// SessionFromRequest returns the session that oidc_auth established for the
// request, if the request passed through oidc_auth and is signed in.
func SessionFromRequest(r *http.Request) (*Session, bool) {
	st, ok := r.Context().Value(sessionCtxKey{}).(*requestState)
	if !ok || st.session == nil {
		return nil, false
	}
	return st.session, true
}

// attach gives the request's later handlers the session: through
// SessionFromRequest, the {oidc.user.*} placeholders and the ID token
// variables.
func attach(r *http.Request, s *Session, cookies []string) *http.Request {
	st := &requestState{Context: r.Context(), session: s, cookies: cookies}
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Map(st.placeholder)
	}
	setVars(r, s)
	return r.WithContext(st)
}

// attachBearer gives the request's later handlers the identity of its
// bearer token: the {http.auth.user.*} placeholders and, to token_inject,
// the token itself (BearerToken).
func attachBearer(r *http.Request, id *bearerIdentity) *http.Request {
	st := &requestState{Context: r.Context(), bearer: id}
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Map(st.placeholder)
	}
	return r.WithContext(st)
}

// BearerToken returns the access token a request was authenticated with,
// when oidc_auth let it in by its bearer token rather than a session. The
// caller brought it itself, so it may be put into the request it sends
// upstream: no other site can make a browser send it.
func BearerToken(r *http.Request) (string, bool) {
	st, ok := r.Context().Value(sessionCtxKey{}).(*requestState)
	if !ok || st.bearer == nil {
		return "", false
	}
	return st.bearer.token, true
}

// SessionStore keeps sessions between requests. The cookie store keeps the
// whole session in encrypted cookies; server-side stores keep it elsewhere and
// put only an opaque ID in the cookie. Implementations must be safe for
// concurrent use.
type SessionStore interface {
	// Load returns the request's session, or (nil, nil) if it carries none
	// that is valid. An error means the store could not be consulted.
	Load(r *http.Request, sc sessionCookie) (*Session, error)
	// Save stores s and sets whatever cookies refer to it on w.
	Save(w http.ResponseWriter, r *http.Request, s *Session) error
	// Update stores next in place of old (a refresh, an idle-timeout
	// touch) and sets whatever cookies refer to it. A session that ended
	// meanwhile stays ended: Update then returns errSessionGone.
	Update(w http.ResponseWriter, r *http.Request, old, next *Session) error
	// Delete ends the request's session s (nil if it has none that is
	// valid) for good, also for copies of its cookies, and clears its
	// cookies.
	Delete(w http.ResponseWriter, r *http.Request, s *Session) error
}

// errSessionGone is returned by Update when the session was ended (a
// logout, a back-channel logout) while the update was under way.
var errSessionGone = errors.New("the session has ended")

// The persisted form of a Session is a compact binary record rather than
// JSON: it is decoded whenever a session is not in memory yet (the first
// request after a restart, or on another instance), and JSON decoding of a
// few kilobytes of tokens costs tens of microseconds.
//
//	version byte | varint createdAt, lastSeen (Unix milliseconds), tokenExpiry (Unix seconds) |
//	uvarint-length-prefixed subject, sid, ID token, access token, refresh token, sign-in ID, userinfo JSON[, provider name]
//
// Claims are not stored: they are decoded again from the ID token and the
// userinfo JSON. Records of versions 3 (without the sign-in ID), 4
// (without userinfo) and 5 (without the provider name, which is still
// written when there is no name: the single-provider form) are read.
const (
	storedSessionVersion   = 6
	storedSessionVersionV5 = 5
	storedSessionVersionV4 = 4
	storedSessionVersionV3 = 3
)

func (s *Session) marshal() ([]byte, error) {
	var expiry int64
	if !s.tokenExpiry.IsZero() {
		expiry = s.tokenExpiry.Unix()
	}
	b := make([]byte, 0, 1+3*binary.MaxVarintLen64+7*binary.MaxVarintLen32+
		len(s.subject)+len(s.sid)+len(s.rawIDToken)+len(s.accessToken)+len(s.refreshToken)+len(s.signInID)+len(s.userinfoJSON)+len(s.providerName))
	version := byte(storedSessionVersion)
	if s.providerName == "" {
		version = storedSessionVersionV5
	}
	b = append(b, version)
	b = binary.AppendVarint(b, s.createdAt.UnixMilli())
	b = binary.AppendVarint(b, s.lastSeen.UnixMilli())
	b = binary.AppendVarint(b, expiry)
	for _, f := range []string{s.subject, s.sid, s.rawIDToken, s.accessToken, s.refreshToken, s.signInID} {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	b = binary.AppendUvarint(b, uint64(len(s.userinfoJSON)))
	b = append(b, s.userinfoJSON...)
	if version >= storedSessionVersion {
		b = binary.AppendUvarint(b, uint64(len(s.providerName)))
		b = append(b, s.providerName...)
	}
	return b, nil
}

func unmarshalSession(b []byte) (*Session, error) {
	if len(b) == 0 || b[0] < storedSessionVersionV3 || b[0] > storedSessionVersion {
		return nil, errors.New("unknown session format")
	}
	rd := recordReader{b: b[1:]}
	created, seen, expiry := rd.varint(), rd.varint(), rd.varint()
	s := &Session{
		subject:      rd.string(),
		sid:          rd.string(),
		rawIDToken:   rd.string(),
		accessToken:  rd.string(),
		refreshToken: rd.string(),
		createdAt:    time.UnixMilli(created),
		lastSeen:     time.UnixMilli(seen),
	}
	if b[0] >= storedSessionVersionV4 {
		s.signInID = rd.string()
	} else {
		s.signInID = derivedSignInID(s.subject, s.sid, created)
	}
	if b[0] >= storedSessionVersionV5 {
		if u := rd.string(); u != "" {
			s.userinfoJSON = []byte(u)
		}
	}
	if b[0] >= storedSessionVersion {
		s.providerName = rd.string()
	}
	if rd.err != nil || len(rd.b) != 0 || s.signInID == "" || (b[0] >= storedSessionVersion && s.providerName == "") {
		return nil, errors.New("malformed session record")
	}
	if expiry != 0 {
		s.tokenExpiry = time.Unix(expiry, 0)
	}
	if err := s.deriveClaims(); err != nil {
		return nil, err
	}
	return s, nil
}

// derivedSignInID names a sign-in recorded before sessions carried a
// sign-in ID: its subject, provider session and sign-in time, which no
// refresh changes.
func derivedSignInID(subject, sid string, createdMs int64) string {
	sum := sha256.Sum256([]byte(subject + "\x00" + sid + "\x00" + strconv.FormatInt(createdMs, 10)))
	return base64.RawURLEncoding.EncodeToString(sum[:16])
}

// recordReader reads the fields of a session record, remembering the first
// error so that callers check once.
type recordReader struct {
	b   []byte
	err error
}

func (r *recordReader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err, r.b = errors.New("bad varint"), nil
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *recordReader) string() string {
	l, n := binary.Uvarint(r.b)
	if n <= 0 || l > uint64(len(r.b)-n) {
		r.err, r.b = errors.New("bad length"), nil
		return ""
	}
	s := string(r.b[n : n+int(l)])
	r.b = r.b[n+int(l):]
	return s
}

// deriveClaims decodes the ID token's payload. The token was verified when
// the session was created and is stored authenticated, so its signature is
// not checked again here.
func (s *Session) deriveClaims() error {
	payload, err := jwtPayload(s.rawIDToken)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var claims map[string]any
	if err := dec.Decode(&claims); err != nil {
		return fmt.Errorf("decoding ID token claims: %v", err)
	}
	s.claimsJSON = payload
	s.claims = claims
	s.rawIDTokenVar = s.rawIDToken
	s.userinfo = map[string]any{}
	if len(s.userinfoJSON) > 0 {
		u, err := claimset.Decode(s.userinfoJSON)
		if err != nil {
			return fmt.Errorf("decoding userinfo claims: %v", err)
		}
		s.userinfo = u
	}
	return nil
}

func jwtPayload(raw string) ([]byte, error) {
	first := strings.IndexByte(raw, '.')
	last := strings.LastIndexByte(raw, '.')
	if first < 0 || first == last {
		return nil, errors.New("ID token is not a compact JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(raw[first+1 : last])
	if err != nil {
		return nil, fmt.Errorf("decoding ID token payload: %v", err)
	}
	return payload, nil
}

// expired reports whether the session has outlived its absolute lifetime
// or, when idle is positive, has not been used for longer than idle.
func (s *Session) expired(now time.Time, lifetime, idle time.Duration) bool {
	if lifetime > 0 && now.Sub(s.createdAt) >= lifetime {
		return true
	}
	if idle > 0 && now.Sub(s.lastSeen) >= idle {
		return true
	}
	return false
}

// touched returns a copy of s last seen at now.
func (s *Session) touched(now time.Time) *Session {
	c := *s
	c.lastSeen = now
	c.record = nil // not stored yet
	return &c
}
