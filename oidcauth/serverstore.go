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
	plain, err := ss.keys.open(rec.Data, ss.recordAAD(id))
	if err != nil {
		return nil, nil // sealed with a retired key, or not ours
	}
	s, err := unmarshalSession(plain)
	if err != nil {
		return nil, nil
	}
	s.owner, s.id = ss.owner, id
	ss.owner.withIndexKeys(s)
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
	ss.decoded[id] = decodedRecord{rec.Data, s}
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

func (ss *serverStore) Delete(w http.ResponseWriter, r *http.Request) error {
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
			ns, err := refresh(ctx, s)
			if err == nil {
				err = ss.put(ctx, ns)
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

// put stores s under its ID.
func (ss *serverStore) put(ctx context.Context, s *Session) error {
	plain, err := s.marshal()
	if err != nil {
		return err
	}
	return ss.backend.Put(ctx, storeKey(s.id), sessionstore.Record{
		Data:    ss.keys.seal(plain, ss.recordAAD(s.id)),
		Subject: ss.owner.indexKey(s.subject),
		SID:     ss.owner.indexKey(s.sid),
		Expires: ss.expires(s),
	})
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
