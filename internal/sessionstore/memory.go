package sessionstore

import (
	"bytes"
	"container/list"
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxEntries bounds a Memory store created with maxEntries <= 0.
const DefaultMaxEntries = 100_000

// sweepInterval is how often Put walks the store for expired entries; Get
// already ignores them, the sweep only returns their memory.
const sweepInterval = time.Minute

// entryOverhead estimates the bytes an entry costs beyond its strings: the
// entry struct, its list element, and its slots in the id and index maps.
const entryOverhead = 256

// Memory is a bounded in-process Store. When full, it evicts the least
// recently used record.
type Memory struct {
	max int
	now func() time.Time // swapped in tests

	mu        sync.Mutex
	lru       *list.List // of *memEntry, most recently used first
	byID      map[string]*list.Element
	bySubject map[string]map[*memEntry]struct{}
	bySID     map[string]map[*memEntry]struct{}
	bytes     int
	locks     map[string]memLock
	lockSeq   uint64
	revoked   memRevocations
	seen      map[string]time.Time // Remember's keys, until when
	nextSweep time.Time
}

type memEntry struct {
	id, subject, sid string
	data             []byte
	expires          time.Time
}

type memLock struct {
	token   uint64
	expires time.Time
}

// maxRemembered bounds Remember's keys (logout tokens' jti, each kept a
// few minutes).
const maxRemembered = 100_000

// NewMemory returns an empty store holding at most maxEntries records
// (DefaultMaxEntries if maxEntries <= 0).
func NewMemory(maxEntries int) *Memory {
	if maxEntries <= 0 {
		maxEntries = DefaultMaxEntries
	}
	return &Memory{
		max:       maxEntries,
		now:       time.Now,
		lru:       list.New(),
		byID:      make(map[string]*list.Element),
		bySubject: make(map[string]map[*memEntry]struct{}),
		bySID:     make(map[string]map[*memEntry]struct{}),
		locks:     make(map[string]memLock),
		revoked:   newMemRevocations(),
		seen:      make(map[string]time.Time),
	}
}

// Get implements Store. The returned Data is the stored slice itself, not a
// copy: records are replaced, never changed in place, and callers must not
// modify it.
func (m *Memory) Get(_ context.Context, id string) (Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	el, ok := m.byID[id]
	if !ok {
		return Record{}, ErrNotFound
	}
	e := el.Value.(*memEntry)
	if !m.now().Before(e.expires) {
		m.remove(el)
		return Record{}, ErrNotFound
	}
	m.lru.MoveToFront(el)
	return Record{Data: e.data}, nil
}

// Reload implements Store; a Memory has no cache in front of it.
func (m *Memory) Reload(ctx context.Context, id string) (Record, error) { return m.Get(ctx, id) }

// Put implements Store.
func (m *Memory) Put(_ context.Context, id string, rec Record) error {
	if id == "" {
		return errEmptyID
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.putLocked(id, rec)
	return nil
}

// putLocked creates or replaces the record id; m.mu must be held.
func (m *Memory) putLocked(id string, rec Record) {
	now := m.now()
	m.sweep(now)
	if el, ok := m.byID[id]; ok {
		m.remove(el)
	}
	if !now.Before(rec.Expires) {
		return
	}
	for m.lru.Len() >= m.max {
		m.remove(m.lru.Back())
	}
	e := &memEntry{id: id, subject: rec.Subject, sid: rec.SID,
		data: append([]byte(nil), rec.Data...), expires: rec.Expires}
	m.byID[id] = m.lru.PushFront(e)
	addIndex(m.bySubject, e.subject, e)
	addIndex(m.bySID, e.sid, e)
	m.bytes += e.size()
}

// Replace implements Store.
func (m *Memory) Replace(_ context.Context, id string, old []byte, rec Record) (bool, error) {
	if id == "" {
		return false, errEmptyID
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	el, ok := m.byID[id]
	if !ok {
		return false, nil
	}
	if e := el.Value.(*memEntry); !m.now().Before(e.expires) || !bytes.Equal(e.data, old) {
		return false, nil
	}
	m.putLocked(id, rec)
	return true, nil
}

// Delete implements Store.
func (m *Memory) Delete(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if el, ok := m.byID[id]; ok {
		m.remove(el)
	}
	return nil
}

// DeleteMatching implements Store.
func (m *Memory) DeleteMatching(_ context.Context, subject, sid string) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var set map[*memEntry]struct{}
	switch {
	case sid != "":
		set = m.bySID[sid]
	case subject != "":
		set = m.bySubject[subject]
	default:
		return 0, errNoSelector
	}
	n := 0
	for e := range set { // remove edits set; Go allows deleting while ranging
		if sid != "" && subject != "" && e.subject != subject {
			continue
		}
		m.remove(m.byID[e.id])
		n++
	}
	return n, nil
}

// TryLock implements Store, for a single process.
func (m *Memory) TryLock(_ context.Context, key string, lease time.Duration) (func(), bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	if l, ok := m.locks[key]; ok && now.Before(l.expires) {
		return func() {}, false, nil
	}
	m.lockSeq++
	token := m.lockSeq
	m.locks[key] = memLock{token: token, expires: now.Add(lease)}
	var once sync.Once
	return func() {
		once.Do(func() {
			m.mu.Lock()
			defer m.mu.Unlock()
			if m.locks[key].token == token {
				delete(m.locks, key)
			}
		})
	}, true, nil
}

// Revoke implements Revocations.
func (m *Memory) Revoke(_ context.Context, sel Selector, at, until time.Time) error {
	return m.revoked.revoke(sel, at, until, m.now())
}

// Revoked implements Revocations.
func (m *Memory) Revoked(_ context.Context, sel Selector, issuedAt time.Time) (bool, error) {
	if !m.revoked.any.Load() {
		return false, nil
	}
	return m.revoked.covers(sel, issuedAt, m.now()), nil
}

// Remember implements Revocations.
func (m *Memory) Remember(_ context.Context, key string, until time.Time) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return remember(m.seen, key, until, m.now())
}

// remember records key in seen until until, unless it is there already;
// expired keys are dropped when seen is full.
func remember(seen map[string]time.Time, key string, until, now time.Time) (bool, error) {
	if u, ok := seen[key]; ok && now.Before(u) {
		return false, nil
	}
	if len(seen) >= maxRemembered {
		for k, u := range seen {
			if !now.Before(u) {
				delete(seen, k)
			}
		}
		if len(seen) >= maxRemembered {
			return false, errFull
		}
	}
	seen[key] = until
	return true, nil
}

// Close implements Store; the records stay until the Memory is dropped.
func (m *Memory) Close() error { return nil }

// Len is the number of records held, including expired ones not yet swept.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lru.Len()
}

// Bytes estimates the memory the records take: data, keys and index
// overhead.
func (m *Memory) Bytes() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.bytes
}

func (e *memEntry) size() int {
	return len(e.data) + len(e.id) + len(e.subject) + len(e.sid) + entryOverhead
}

// remove drops a record and its index entries; m.mu must be held.
func (m *Memory) remove(el *list.Element) {
	e := m.lru.Remove(el).(*memEntry)
	delete(m.byID, e.id)
	removeIndex(m.bySubject, e.subject, e)
	removeIndex(m.bySID, e.sid, e)
	m.bytes -= e.size()
}

// sweep drops expired records, leases and revocations at most once per
// sweepInterval; m.mu must be held.
func (m *Memory) sweep(now time.Time) {
	if now.Before(m.nextSweep) {
		return
	}
	m.nextSweep = now.Add(sweepInterval)
	for el := m.lru.Front(); el != nil; {
		next := el.Next()
		if !now.Before(el.Value.(*memEntry).expires) {
			m.remove(el)
		}
		el = next
	}
	for k, l := range m.locks {
		if !now.Before(l.expires) {
			delete(m.locks, k)
		}
	}
	m.revoked.sweep(now)
	for k, u := range m.seen {
		if !now.Before(u) {
			delete(m.seen, k)
		}
	}
}

func addIndex(idx map[string]map[*memEntry]struct{}, key string, e *memEntry) {
	if key == "" {
		return
	}
	set := idx[key]
	if set == nil {
		set = make(map[*memEntry]struct{}, 1)
		idx[key] = set
	}
	set[e] = struct{}{}
}

func removeIndex(idx map[string]map[*memEntry]struct{}, key string, e *memEntry) {
	if set := idx[key]; set != nil {
		delete(set, e)
		if len(set) == 0 {
			delete(idx, key)
		}
	}
}

var _ Store = (*Memory)(nil)

// memRevocations is a revocation list in memory: the Memory store's, and
// the index the storage-backed list keeps of what it read.
type memRevocations struct {
	// any is len(entries) > 0: Revoked runs on every request of a cookie
	// session and usually has nothing to find.
	any     atomic.Bool
	mu      sync.RWMutex
	entries map[string]memRevocation // "sub:", "sid:" or "sess:" + key
}

type memRevocation struct {
	atMs  int64
	until time.Time
}

func newMemRevocations() memRevocations {
	return memRevocations{entries: make(map[string]memRevocation)}
}

func (mr *memRevocations) revoke(sel Selector, at, until, now time.Time) error {
	key, ok := sel.key()
	if !ok {
		return errNoSelector
	}
	mr.merge(key, memRevocation{at.UnixMilli(), until}, now)
	return nil
}

// merge keeps the latest revocation time and the longest retention, so
// concurrent or repeated logouts never shorten a revocation.
func (mr *memRevocations) merge(key string, r memRevocation, now time.Time) {
	if !now.Before(r.until) {
		return
	}
	mr.mu.Lock()
	defer mr.mu.Unlock()
	cur := mr.entries[key]
	cur.atMs = max(cur.atMs, r.atMs)
	if r.until.After(cur.until) {
		cur.until = r.until
	}
	mr.entries[key] = cur
	mr.any.Store(true)
}

func (mr *memRevocations) covers(sel Selector, issuedAt, now time.Time) bool {
	if !mr.any.Load() {
		return false
	}
	mr.mu.RLock()
	defer mr.mu.RUnlock()
	revoked := func(key string) bool {
		r, ok := mr.entries[key]
		return ok && now.Before(r.until) && revokedAt(r.atMs, issuedAt)
	}
	return (sel.Subject != "" && revoked("sub:"+sel.Subject)) ||
		(sel.SID != "" && revoked("sid:"+sel.SID)) ||
		(sel.Session != "" && revoked("sess:"+sel.Session))
}

func (mr *memRevocations) sweep(now time.Time) {
	mr.mu.Lock()
	defer mr.mu.Unlock()
	for k, r := range mr.entries {
		if !now.Before(r.until) {
			delete(mr.entries, k)
		}
	}
	mr.any.Store(len(mr.entries) > 0)
}
