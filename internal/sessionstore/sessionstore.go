// Package sessionstore keeps sealed session records on the server side, in
// process memory (Memory) or in Redis shared by a Caddy cluster (Redis).
//
// The stores never see plaintext: callers encrypt a session before Put and
// decrypt it after Get. Only the subject and the provider's session ID are
// stored in the clear, because back-channel logout must find sessions by them.
package sessionstore

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrNotFound is returned by Get for a record that is absent or expired.
var ErrNotFound = errors.New("session not found")

// ErrUnavailable wraps errors reaching the backing store (Redis down), so
// callers answer 503 instead of treating the user as signed out.
var ErrUnavailable = errors.New("session store unavailable")

// Record is one sealed session.
type Record struct {
	// Data is the sealed session. Stores copy it; it is never logged.
	Data []byte
	// Subject indexes the record for back-channel logout by sub.
	Subject string
	// SID is the provider session ID, indexing the record for back-channel
	// logout by sid; may be "".
	SID string
	// Expires is when the record disappears.
	Expires time.Time
}

// Selector names the sessions a revocation is about, by index keys (the
// caller's hashes, never the identifiers themselves): every session of a
// subject, every session of a provider session (sid), or one sign-in.
type Selector struct {
	Subject string
	SID     string
	Session string
}

// key is the revocation entry Revoke writes for sel: the most specific of
// its keys.
func (sel Selector) key() (string, bool) {
	switch {
	case sel.Session != "":
		return "sess:" + sel.Session, true
	case sel.SID != "":
		return "sid:" + sel.SID, true
	case sel.Subject != "":
		return "sub:" + sel.Subject, true
	}
	return "", false
}

// keys are the revocation entries that may cover a session with sel's keys.
func (sel Selector) keys() []string {
	keys := make([]string, 0, 3)
	if sel.Subject != "" {
		keys = append(keys, "sub:"+sel.Subject)
	}
	if sel.SID != "" {
		keys = append(keys, "sid:"+sel.SID)
	}
	if sel.Session != "" {
		keys = append(keys, "sess:"+sel.Session)
	}
	return keys
}

// Revocations ends sessions that cannot be deleted, stateless cookie
// sessions, by refusing them until they would have expired anyway; and
// remembers one-time values such as the jti of logout tokens.
// Implementations are safe for concurrent use.
type Revocations interface {
	// Revoke records that the sessions sel names (by its most specific
	// key: Session, else SID, else Subject), issued at or before at, are
	// revoked, keeping the entry until until.
	Revoke(ctx context.Context, sel Selector, at, until time.Time) error
	// Revoked reports whether a session with sel's keys, issued at
	// issuedAt, was revoked by any of them. Times compare at millisecond
	// precision and a session issued in the same millisecond as a
	// revocation counts as revoked: failing closed costs a sign-in at most.
	Revoked(ctx context.Context, sel Selector, issuedAt time.Time) (bool, error)
	// Remember records key until until and reports whether it was new:
	// false means it was remembered already (a replay).
	Remember(ctx context.Context, key string, until time.Time) (bool, error)
	// Close releases the resources.
	Close() error
}

// Store is a server-side session store. Implementations are safe for
// concurrent use.
type Store interface {
	Revocations
	// Get returns the record's Data, or ErrNotFound if it is absent or
	// expired. It is on every request's path, so it fetches nothing else:
	// Subject, SID and Expires come back empty (Data must carry whatever
	// the caller needs), and Data may be shared with the store, so callers
	// must not modify it.
	Get(ctx context.Context, id string) (Record, error)
	// Reload is Get bypassing any cache in this process, for decisions a
	// stale record would make wrong (whether another instance refreshed
	// the tokens already). Stores without such a cache read as Get does.
	Reload(ctx context.Context, id string) (Record, error)
	// Put creates or replaces the record id. A record that is already
	// expired is deleted instead. Session IDs must be fresh random values
	// per sign-in: Redis cannot drop a replaced record's old index entries.
	Put(ctx context.Context, id string, rec Record) error
	// Replace writes rec over the record id only if that record still
	// holds exactly old, and reports whether it did. A record deleted
	// meanwhile (a logout) stays deleted: a write that follows a refresh
	// or an idle-timeout touch must never bring an ended session back.
	Replace(ctx context.Context, id string, old []byte, rec Record) (bool, error)
	// Delete removes the record id; an absent record is not an error.
	Delete(ctx context.Context, id string) error
	// DeleteMatching deletes every record with this subject (if sid == "")
	// or this sid (if sid != ""; a non-empty subject must then match too)
	// and returns how many it deleted.
	DeleteMatching(ctx context.Context, subject, sid string) (int, error)
	// TryLock takes the lease named key for at most lease, so that one
	// instance refreshes a session's tokens while others wait. ok is false if
	// another holder has it. release is idempotent and only ever releases
	// this lease, never one a later holder took after ours expired.
	TryLock(ctx context.Context, key string, lease time.Duration) (release func(), ok bool, err error)
}

var (
	errEmptyID    = errors.New("sessionstore: empty session id")
	errNoSelector = errors.New("sessionstore: need a subject, a sid or a session")
	errFull       = errors.New("sessionstore: too many remembered values")
)

func unavailable(err error) error {
	// %w twice: callers test for ErrUnavailable and can still tell a
	// cancelled request (context.Canceled) from an outage.
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// revokedAt reports whether a session issued at issuedAt falls under a
// revocation recorded at atMs (unix milliseconds).
func revokedAt(atMs int64, issuedAt time.Time) bool { return issuedAt.UnixMilli() <= atMs }
