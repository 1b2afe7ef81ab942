package oidcauth

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/oidcgate/caddy-oidc/internal/sessionstore"
)

const (
	// maxCookieSize bounds a session cookie's name and value together.
	// Browsers accept at least 4096 bytes of name, value and attributes
	// (RFC 6265 6.1); this leaves room for the attributes, as other
	// gateways' 4000-byte cookies do.
	maxCookieSize = 4000
	// maxCookieChunks bounds how much a session may put in request headers.
	maxCookieChunks = 8
	// sessionCacheSize bounds the decoded sessions kept in memory.
	sessionCacheSize = 10000
)

// cookieStore keeps the whole session in the browser, sealed with AES-256-GCM
// and split across numbered cookies when it is large. It is stateless: any
// Caddy instance holding the keys can read the sessions another one wrote.
//
// The first cookie's value starts with "<n>." when the session spans n > 1
// cookies (the base64url alphabet has no dot), so a reader knows how many to
// join.
type cookieStore struct {
	owner    *Handler
	keys     *keyRing
	cookies  cookieSettings
	aad      []byte
	lifetime time.Duration
	idle     time.Duration
	cache    *sessionCache
	// revocations lists the sessions ended by a logout or a back-channel
	// logout: a stateless cookie cannot be deleted, so it (and any copy of
	// it) is refused instead until it would have expired anyway.
	revocations sessionstore.Revocations
}

func (cs *cookieStore) Load(r *http.Request, sc sessionCookie) (*Session, error) {
	first, ok := sc.chunk(0)
	if !ok || first == "" {
		return nil, nil
	}
	// Chunks are compared with the cached value in place, so a signed-in
	// request allocates nothing to find its session.
	n, head, chunked := parseChunkHeader(first)
	if !chunked {
		n = 1
	}
	chunks := make([]string, 1, maxCookieChunks)
	chunks[0] = head
	for i := 1; i < n; i++ {
		part, ok := sc.chunk(i)
		if !ok {
			return nil, nil
		}
		chunks = append(chunks, part)
	}
	if s := cs.cache.get(first, chunks[1:]); s != nil {
		return cs.unlessRevoked(r, s)
	}
	value := strings.Join(chunks, "")
	plain, err := cs.keys.openString(value, cs.aad)
	if err != nil {
		return nil, nil // tampered, foreign or from a retired key: no session
	}
	s, err := unmarshalSession(plain)
	if err != nil {
		return nil, nil
	}
	if err := cs.owner.adopt(s); err != nil {
		return nil, nil
	}
	cs.cache.put(first, chunks[1:], s)
	return cs.unlessRevoked(r, s)
}

func (cs *cookieStore) unlessRevoked(r *http.Request, s *Session) (*Session, error) {
	if cs.revocations == nil {
		return s, nil
	}
	revoked, err := cs.revocations.Revoked(r.Context(), s.revocationSelector(), s.createdAt)
	if err != nil {
		return nil, err
	}
	if revoked {
		return nil, nil
	}
	return s, nil
}

// parseChunkHeader splits "<n>.<data>" into n and data.
func parseChunkHeader(v string) (n int, rest string, ok bool) {
	i := strings.IndexByte(v, '.')
	if i <= 0 || i > 2 {
		return 0, v, false
	}
	n, err := strconv.Atoi(v[:i])
	if err != nil || n < 2 || n > maxCookieChunks {
		return 0, v, false
	}
	return n, v[i+1:], true
}

func (cs *cookieStore) Save(w http.ResponseWriter, r *http.Request, s *Session) error {
	plain, err := s.marshal()
	if err != nil {
		return err
	}
	value := cs.keys.sealString(plain, cs.aad)
	name := cs.cookies.fullName(r, cs.cookies.name)
	// Each chunk's name is at most the name plus "_7", and the first
	// chunk's value starts with "<n>." when there are several.
	chunkSize := maxCookieSize - len(name) - 2
	n := (len(value) + chunkSize - 1) / chunkSize
	if n > maxCookieChunks {
		return fmt.Errorf("session of %d bytes is too large for cookies (at most %d); request fewer scopes or claims, or use a server-side session store", len(value), maxCookieChunks*chunkSize)
	}
	maxAge := cs.maxAge(s, time.Now())
	for i := range n {
		part := value[i*chunkSize : min((i+1)*chunkSize, len(value))]
		if i == 0 && n > 1 {
			part = strconv.Itoa(n) + "." + part
		}
		http.SetCookie(w, cs.cookies.cookie(r, chunkName(name, i), part, maxAge))
	}
	// A smaller session than before leaves chunks behind; remove them.
	requestCookieNames(r, name+"_", func(k, _ string) {
		if isChunkName(k, name) {
			if i, _ := strconv.Atoi(k[len(name)+1:]); i >= n {
				cs.cookies.expire(w, r, k)
			}
		}
	})
	return nil
}

// maxAge keeps the cookie until the session would expire anyway.
func (cs *cookieStore) maxAge(s *Session, now time.Time) time.Duration {
	var d time.Duration
	if cs.lifetime > 0 {
		d = s.createdAt.Add(cs.lifetime).Sub(now)
	}
	if cs.idle > 0 && (d == 0 || cs.idle < d) {
		d = cs.idle
	}
	return d
}

// Update implements SessionStore: the new cookie replaces the old one in
// the browser. A session revoked meanwhile (a logout while the provider
// was refreshing its tokens) stays revoked, since its sign-in ID does not
// change; Update says so rather than hand out the new cookie.
func (cs *cookieStore) Update(w http.ResponseWriter, r *http.Request, _, next *Session) error {
	if cs.revocations != nil {
		revoked, err := cs.revocations.Revoked(r.Context(), next.revocationSelector(), next.createdAt)
		if err != nil {
			return err
		}
		if revoked {
			return errSessionGone
		}
	}
	return cs.Save(w, r, next)
}

// Delete implements SessionStore. The browser is asked to forget the
// cookies, and the sign-in is revoked, so that a copy of the cookie taken
// earlier is refused too, until the session would have expired anyway.
func (cs *cookieStore) Delete(w http.ResponseWriter, r *http.Request, s *Session) error {
	name := cs.cookies.fullName(r, cs.cookies.name)
	if v, ok := requestCookie(r, name); ok {
		cs.cache.remove(v)
	}
	cs.cookies.expire(w, r, name)
	requestCookieNames(r, name+"_", func(k, _ string) {
		if isChunkName(k, name) {
			cs.cookies.expire(w, r, k)
		}
	})
	if s == nil || cs.revocations == nil {
		return nil
	}
	now := cs.owner.now()
	until := s.createdAt.Add(cs.lifetime)
	if cs.lifetime <= 0 {
		until = now.Add(defaultSessionLifetime)
	}
	return cs.revocations.Revoke(r.Context(), sessionstore.Selector{Session: s.signInKey}, now, until)
}

// sessionCache remembers decoded sessions by their sealed cookie value, so a
// signed-in request costs a map lookup instead of decryption and decoding.
// Entries are found by the first cookie's value (which names the number of
// cookies) and every other cookie must match too, so a changed cookie is
// never served from the cache. Each byte of a request's cookies is compared
// once.
type sessionCache struct {
	mu      sync.RWMutex
	entries map[string]cachedSession
	max     int
}

type cachedSession struct {
	rest    []string // the cookies after the first, as sealed
	session *Session
}

func newSessionCache(max int) *sessionCache {
	return &sessionCache{entries: make(map[string]cachedSession), max: max}
}

// get returns the session sealed as first followed by rest.
func (c *sessionCache) get(first string, rest []string) *Session {
	c.mu.RLock()
	e, ok := c.entries[first]
	c.mu.RUnlock()
	if !ok || len(e.rest) != len(rest) {
		return nil
	}
	for i, part := range rest {
		if part != e.rest[i] {
			return nil
		}
	}
	return e.session
}

func (c *sessionCache) put(first string, rest []string, s *Session) {
	kept := make([]string, len(rest)) // not slices.Clone: rest must not escape
	copy(kept, rest)
	c.mu.Lock()
	if len(c.entries) >= c.max {
		// Evict an arbitrary tenth: cheap, and a miss only costs a decode.
		n := c.max / 10
		for k := range c.entries {
			delete(c.entries, k)
			if n--; n <= 0 {
				break
			}
		}
	}
	c.entries[first] = cachedSession{rest: kept, session: s}
	c.mu.Unlock()
}

func (c *sessionCache) remove(first string) {
	c.mu.Lock()
	delete(c.entries, first)
	c.mu.Unlock()
}

// Interface guard
var _ SessionStore = (*cookieStore)(nil)
