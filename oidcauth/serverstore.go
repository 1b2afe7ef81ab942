package oidcauth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/oidcgate/caddy-oidc/internal/sessionstore"
)

// sessionIDLength is the length of a server-side session ID: 32 random
// bytes (256 bits), base64url without padding.
const sessionIDLength = 43

// serverStore keeps sessions on the server (in memory or in Redis) and puts
// only an opaque random session ID in the cookie. Records are sealed with the
// session keys like cookies are, so the backing store never holds a token in
// clear, and bound to their ID, so a record cannot be moved to another ID.
type serverStore struct {
	owner    *Handler
	keys     *keyRing
	cookies  cookieSettings
	aad      []byte
	lifetime time.Duration
	idle     time.Duration
	backend  sessionstore.Store

	// decoded remembers the last decoded session of each ID with the sealed
	// record it came from: a request that finds the same record skips
	// decryption and decoding, and a record changed by another instance
	// (refresh, logout) is decoded again.
	mu      sync.RWMutex
	decoded map[string]decodedRecord
}

type decodedRecord struct {
	data    []byte
	session *Session
}

// maxDecodedRecords bounds the decoded-session cache: the sessions in use
// right now are served from it, while the store itself holds every session
// only in its sealed form.
const maxDecodedRecords = 1000

func (ss *serverStore) Load(r *http.Request, sc sessionCookie) (*Session, error) {
	id, ok := sc.chunk(0)
	if !ok || len(id) != sessionIDLength {
		return nil, nil
	}
	return ss.load(r.Context(), id, false)
}

// load returns the session stored under id, or nil if there is none. With
// fresh, it is read from the backing store itself, bypassing the store's
// local cache.
func (ss *serverStore) load(ctx context.Context, id string, fresh bool) (*Session, error) {
	get := ss.backend.Get
	if fresh {
		get = ss.backend.Reload
	}
	rec, err := get(ctx, storeKey(id))
	if errors.Is(err, sessionstore.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	ss.mu.RLock()
	d, ok := ss.decoded[id]
	ss.mu.RUnlock()
	if ok && bytes.Equal(d.data, rec.Data) {
		return d.session, nil
	}
	// rec.Data may be the store's own slice; the session keeps a copy to
	// compare with when it writes.
	data := bytes.Clone(rec.Data)
	plain, err := ss.keys.open(data, ss.recordAAD(id))
	if err != nil {
		return nil, nil // sealed with a retired key, or not ours
	}
	s, err := unmarshalSession(plain)
	if err != nil {
		return nil, nil
	}
	if err := ss.owner.adopt(s); err != nil {
		return nil, nil
	}
	s.id, s.record = id, data
	ss.mu.Lock()
	if len(ss.decoded) >= maxDecodedRecords {
		n := maxDecodedRecords / 10 // an arbitrary tenth; a miss costs a decode
		for k := range ss.decoded {
			delete(ss.decoded, k)
			if n--; n <= 0 {
				break
			}
		}
	}
	ss.decoded[id] = decodedRecord{data, s}
	ss.mu.Unlock()
	return s, nil
}

func (ss *serverStore) recordAAD(id string) []byte {
	return append(append([]byte(nil), ss.aad...), id...)
}

// Save stores s under its ID, giving it a new one if it has none (a new
// sign-in always gets a new ID, so an ID planted before sign-in is useless).
func (ss *serverStore) Save(w http.ResponseWriter, r *http.Request, s *Session) error {
	if s.id == "" {
		s.id = randomString(32)
	}
	if err := ss.put(r.Context(), s); err != nil {
		return err
	}
	name := ss.cookies.fullName(r, ss.cookies.name)
	if cur, _ := requestCookie(r, name); cur != s.id {
		http.SetCookie(w, ss.cookies.cookie(r, name, s.id, time.Until(ss.expires(s))))
	}
	return nil
}

// expires is when the session ends unless used again (idle timeout) or at
// all (lifetime).
func (ss *serverStore) expires(s *Session) time.Time {
	end := s.createdAt.Add(ss.lifetime)
	if ss.idle > 0 {
		if idleEnd := s.lastSeen.Add(ss.idle); idleEnd.Before(end) {
			end = idleEnd
		}
	}
	return end
}

// Update implements SessionStore: next replaces the record old was loaded
// from, and only that record. If the record changed meanwhile, it is read
// again: gone means the session ended (a logout) and stays so; otherwise
// the write is retried on top of the new record, keeping next's tokens
// only if the record still holds old's. A session whose record is set was
// written already (by refresh).
func (ss *serverStore) Update(w http.ResponseWriter, r *http.Request, old, next *Session) error {
	if next.record != nil {
		return nil
	}
	_, err := ss.replace(r.Context(), old, next)
	return err
}

// replace writes next over old's record, as Update describes, and returns
// the session as stored.
func (ss *serverStore) replace(ctx context.Context, old, next *Session) (*Session, error) {
	for range 3 {
		rec, data, err := ss.seal(next)
		if err != nil {
			return nil, err
		}
		ok, err := ss.backend.Replace(ctx, storeKey(old.id), old.record, rec)
		if err != nil {
			return nil, err
		}
		if ok {
			stored := *next
			stored.record = data
			return &stored, nil
		}
		cur, err := ss.load(ctx, old.id, true)
		switch {
		case err != nil:
			return nil, err
		case cur == nil:
			return nil, errSessionGone
		case cur.accessToken != old.accessToken || cur.refreshToken != old.refreshToken:
			if next.accessToken != old.accessToken {
				// Another write changed the tokens while ours were being
				// refreshed; both cannot win.
				return nil, errSessionGone
			}
			return cur, nil // a touch over a refresh: the refresh wins
		}
		// Only lastSeen moved (a touch elsewhere): write again on top.
		n := *next
		n.lastSeen = maxTime(n.lastSeen, cur.lastSeen)
		old, next = cur, &n
	}
	return nil, fmt.Errorf("%w: the session record keeps changing", sessionstore.ErrUnavailable)
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// Delete implements SessionStore: the record is deleted, so the session ID
// in any copy of the cookie leads nowhere.
func (ss *serverStore) Delete(w http.ResponseWriter, r *http.Request, _ *Session) error {
	name := ss.cookies.fullName(r, ss.cookies.name)
	ss.cookies.expire(w, r, name)
	id, ok := requestCookie(r, name)
	if !ok || len(id) != sessionIDLength {
		return nil
	}
	ss.mu.Lock()
	delete(ss.decoded, id)
	ss.mu.Unlock()
	return ss.backend.Delete(r.Context(), storeKey(id))
}

// endSessions ends every session of the subject, or of the provider session
// sid, for back-channel logout.
func (ss *serverStore) endSessions(ctx context.Context, subject, sid string) (int, error) {
	n, err := ss.backend.DeleteMatching(ctx, subject, sid)
	if err != nil {
		return n, fmt.Errorf("ending sessions: %w", err)
	}
	return n, nil
}

// refresh refreshes the tokens of s once across every instance sharing the
// store: the instance that takes the lease refreshes and stores the result,
// the others wait for the stored result. Providers that rotate refresh
// tokens would otherwise see the same refresh token twice and revoke the
// whole grant.
func (ss *serverStore) refresh(ctx context.Context, s *Session, refresh func(context.Context, *Session) (*Session, error)) (*Session, error) {
	const lease = providerRequestTimeout + 5*time.Second
	deadline := time.Now().Add(lease)
	for {
		release, ok, err := ss.backend.TryLock(ctx, "refresh:"+storeKey(s.id), lease)
		if err != nil {
			return nil, err
		}
		// Read past the local cache: a stale record here would spend the
		// refresh token a second time.
		cur, err := ss.load(ctx, s.id, true)
		if err != nil {
			if ok {
				release()
			}
			return nil, err
		}
		switch {
		case cur == nil:
			if ok {
				release()
			}
			return nil, ErrSessionEnded // deleted: logged out, or refused elsewhere
		case cur.refreshToken != s.refreshToken || cur.accessToken != s.accessToken:
			if ok {
				release()
			}
			return cur, nil // refreshed by another instance
		case ok:
			// The write is conditional on the record read above: a logout
			// that lands while the provider answers stays a logout.
			ns, err := refresh(ctx, cur)
			if err == nil {
				ns, err = ss.replace(ctx, cur, ns)
			}
			release()
			return ns, err
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%w: waiting for another instance to refresh the tokens", errProviderUnavailable)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// put stores s under its ID, creating or replacing the record: for new
// sessions, whose ID is fresh.
func (ss *serverStore) put(ctx context.Context, s *Session) error {
	rec, _, err := ss.seal(s)
	if err != nil {
		return err
	}
	return ss.backend.Put(ctx, storeKey(s.id), rec)
}

// seal returns s as a record, and its sealed data.
func (ss *serverStore) seal(s *Session) (sessionstore.Record, []byte, error) {
	plain, err := s.marshal()
	if err != nil {
		return sessionstore.Record{}, nil, err
	}
	data := ss.keys.seal(plain, ss.recordAAD(s.id))
	return sessionstore.Record{
		Data:    data,
		Subject: s.provider.indexKey(s.subject),
		SID:     s.provider.indexKey(s.sid),
		Expires: ss.expires(s),
	}, data, nil
}

// storeKey is what the backing store knows a session by: a hash of its ID.
// The ID in the cookie is a bearer credential; whoever can read the store's
// key names (a Redis user, a dump, MONITOR) must not be able to present it.
func storeKey(id string) string {
	sum := sha256.Sum256([]byte(id))
	var key [43]byte // base64url of 32 bytes, unpadded
	base64.RawURLEncoding.Encode(key[:], sum[:])
	return string(key[:])
}

// Interface guard
var _ SessionStore = (*serverStore)(nil)
