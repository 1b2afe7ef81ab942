package sessionstore

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

// DefaultStorageSyncInterval is how often a StorageRevocations reads the
// revocations other instances wrote.
const DefaultStorageSyncInterval = time.Second

// StorageRevocations is a revocation list kept in Caddy's storage (the
// file system by default; whatever storage module a Caddy cluster shares),
// for cookie sessions when no Redis is configured. Revocations survive a
// restart, and instances sharing the storage see each other's within one
// sync interval.
//
// Each instance writes its own files, one per hour in which its entries
// expire, named <dir>/<hour>-<instance>, so that no two instances ever
// write one file and a whole file is deleted once its hour has passed. A
// file holds all of the instance's entries of its hour and is rewritten
// with every revocation; revocations are rare next to requests, which
// read only the in-memory index. Every instance lists the directory once
// per sync interval and reads the files that changed.
//
// Remember's one-time values are kept in memory only: a logout token
// replayed to another instance within the few minutes it is accepted
// there would revoke the same sessions once more.
type StorageRevocations struct {
	storage  certmagic.Storage
	dir      string
	instance string
	logger   *zap.Logger
	now      func() time.Time

	index memRevocations

	seenMu sync.Mutex
	seen   map[string]time.Time

	writeMu sync.Mutex
	own     map[int64]map[string]memRevocation // by the hour its entries end

	syncMu sync.Mutex
	files  map[string]fileState // what was read of each file
	syncs  int

	stop context.CancelFunc
	done chan struct{}
}

type fileState struct {
	modified time.Time
	size     int64
}

// revocationFile is the content of one file.
type revocationFile struct {
	Entries []revocationEntry `json:"entries"`
}

type revocationEntry struct {
	Key   string `json:"k"`
	AtMs  int64  `json:"at"`
	Until int64  `json:"until"` // unix ms
}

// NewStorageRevocations reads the revocations under dir in storage and
// keeps reading new ones every interval (DefaultStorageSyncInterval if
// zero) until Close.
func NewStorageRevocations(storage certmagic.Storage, dir string, interval time.Duration, logger *zap.Logger) *StorageRevocations {
	if interval <= 0 {
		interval = DefaultStorageSyncInterval
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	ctx, stop := context.WithCancel(context.Background())
	sr := &StorageRevocations{
		storage:  storage,
		dir:      strings.TrimSuffix(dir, "/"),
		instance: strings.ToLower(rand.Text()[:16]),
		logger:   logger,
		now:      time.Now,
		index:    newMemRevocations(),
		seen:     make(map[string]time.Time),
		own:      make(map[int64]map[string]memRevocation),
		files:    make(map[string]fileState),
		stop:     stop,
		done:     make(chan struct{}),
	}
	// The first read completes before the first request is served, so a
	// restart never lets a revoked session through.
	first, cancel := context.WithTimeout(ctx, 5*time.Second)
	if err := sr.Sync(first); err != nil {
		logger.Warn("reading session revocations from storage; retrying", zap.String("dir", sr.dir), zap.Error(err))
	}
	cancel()
	go func() {
		defer close(sr.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		failing := false
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			err := sr.Sync(ctx)
			switch {
			case err != nil && !failing && ctx.Err() == nil:
				logger.Warn("reading session revocations from storage", zap.String("dir", sr.dir), zap.Error(err))
				failing = true
			case err == nil && failing:
				logger.Info("reading session revocations from storage works again", zap.String("dir", sr.dir))
				failing = false
			}
		}
	}()
	return sr
}

// Revoke implements Revocations. The entry is in effect on this instance
// at once and stored before Revoke returns.
func (sr *StorageRevocations) Revoke(ctx context.Context, sel Selector, at, until time.Time) error {
	key, ok := sel.key()
	if !ok {
		return errNoSelector
	}
	now := sr.now()
	if !now.Before(until) {
		return nil
	}
	e := memRevocation{at.UnixMilli(), until}
	sr.index.merge(key, e, now)

	hour := until.Truncate(time.Hour).Add(time.Hour).Unix() // every entry of the file ends before its hour
	sr.writeMu.Lock()
	defer sr.writeMu.Unlock()
	bucket := sr.own[hour]
	if bucket == nil {
		bucket = make(map[string]memRevocation)
		sr.own[hour] = bucket
	}
	cur := bucket[key]
	cur.atMs = max(cur.atMs, e.atMs)
	if e.until.After(cur.until) {
		cur.until = e.until
	}
	bucket[key] = cur
	var f revocationFile
	for k, r := range bucket {
		f.Entries = append(f.Entries, revocationEntry{k, r.atMs, r.until.UnixMilli()})
	}
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	if err := sr.storage.Store(ctx, sr.fileName(hour, sr.instance), b); err != nil {
		return unavailable(fmt.Errorf("storing revocation: %w", err))
	}
	return nil
}

// Revoked implements Revocations from memory.
func (sr *StorageRevocations) Revoked(_ context.Context, sel Selector, issuedAt time.Time) (bool, error) {
	if !sr.index.any.Load() {
		return false, nil // the usual case, on every request: nothing to find, not even the time
	}
	return sr.index.covers(sel, issuedAt, sr.now()), nil
}

// Remember implements Revocations, in this instance's memory.
func (sr *StorageRevocations) Remember(_ context.Context, key string, until time.Time) (bool, error) {
	sr.seenMu.Lock()
	defer sr.seenMu.Unlock()
	return remember(sr.seen, key, until, sr.now())
}

// Close stops reading the storage.
func (sr *StorageRevocations) Close() error {
	sr.stop()
	<-sr.done
	return nil
}

func (sr *StorageRevocations) fileName(hour int64, instance string) string {
	return sr.dir + "/" + strconv.FormatInt(hour, 10) + "-" + instance
}

// fullReadEvery is how many syncs pass between reads of every file, changed
// or not: a storage whose modification times are coarse could report a
// rewritten file of the same size as unchanged.
const fullReadEvery = 30

// Sync reads the files that changed since the last Sync, and deletes those
// whose hour has passed.
func (sr *StorageRevocations) Sync(ctx context.Context) error {
	sr.syncMu.Lock()
	defer sr.syncMu.Unlock()
	if sr.syncs++; sr.syncs%fullReadEvery == 0 {
		clear(sr.files)
	}
	now := sr.now()
	sr.index.sweep(now)
	sr.dropOwnBefore(now)
	keys, err := sr.storage.List(ctx, sr.dir, false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	present := make(map[string]bool, len(keys))
	var errs []error
	for _, key := range keys {
		hourStr, instance, ok := strings.Cut(path.Base(key), "-")
		hour, perr := strconv.ParseInt(hourStr, 10, 64)
		if !ok || perr != nil {
			continue // not ours
		}
		if now.Unix() >= hour {
			_ = sr.storage.Delete(ctx, key) // every entry has ended; any instance may tidy up
			continue
		}
		present[key] = true
		if instance == sr.instance {
			continue // in memory already
		}
		info, err := sr.storage.Stat(ctx, key)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		st := fileState{info.Modified, info.Size}
		if sr.files[key] == st {
			continue
		}
		b, err := sr.storage.Load(ctx, key)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var f revocationFile
		if err := json.Unmarshal(b, &f); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", key, err))
			continue
		}
		for _, e := range f.Entries {
			sr.index.merge(e.Key, memRevocation{e.AtMs, time.UnixMilli(e.Until)}, now)
		}
		sr.files[key] = st
	}
	for key := range sr.files {
		if !present[key] {
			delete(sr.files, key)
		}
	}
	return errors.Join(errs...)
}

// dropOwnBefore forgets this instance's files whose hour has passed.
func (sr *StorageRevocations) dropOwnBefore(now time.Time) {
	sr.writeMu.Lock()
	defer sr.writeMu.Unlock()
	for hour := range sr.own {
		if now.Unix() >= hour {
			delete(sr.own, hour)
		}
	}
	sr.seenMu.Lock()
	for k, u := range sr.seen {
		if !now.Before(u) {
			delete(sr.seen, k)
		}
	}
	sr.seenMu.Unlock()
}

var _ Revocations = (*StorageRevocations)(nil)
