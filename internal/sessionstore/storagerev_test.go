package sessionstore

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
)

func newStorageRevocations(t *testing.T, storage certmagic.Storage, clock *fakeClock) *StorageRevocations {
	t.Helper()
	sr := NewStorageRevocations(storage, "oidc_auth/revocations/test", time.Hour, nil) // synced by hand
	sr.now = clock.Now
	t.Cleanup(func() { sr.Close() })
	return sr
}

func TestStorageRevocationsConformance(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	sr := newStorageRevocations(t, &certmagic.FileStorage{Path: t.TempDir()}, clock)
	testRevocations(t, sr, clock.Now, clock.Advance)
}

// TestStorageRevocationsReachOtherInstancesAndSurviveRestart: a revocation
// written by one instance is seen by another sharing the storage at its
// next sync, and by an instance started afterwards before it serves
// anything.
func TestStorageRevocationsReachOtherInstancesAndSurviveRestart(t *testing.T) {
	ctx := context.Background()
	storage := &certmagic.FileStorage{Path: t.TempDir()}
	clock := &fakeClock{t: time.Now()}
	a, b := newStorageRevocations(t, storage, clock), newStorageRevocations(t, storage, clock)
	now := clock.Now()
	issued := now.Add(-time.Minute)
	for _, sel := range []Selector{{Session: "x1"}, {SID: "s1"}, {Subject: "u1"}} {
		if err := a.Revoke(ctx, sel, now, now.Add(2*time.Hour)); err != nil {
			t.Fatal(err)
		}
		if ok, _ := a.Revoked(ctx, sel, issued); !ok {
			t.Fatalf("%+v: not revoked on the instance that revoked it", sel)
		}
		if err := b.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		if ok, _ := b.Revoked(ctx, sel, issued); !ok {
			t.Fatalf("%+v: not revoked on another instance after its sync", sel)
		}
	}
	// A later revocation of one key in the same file is read again.
	if err := a.Revoke(ctx, Selector{Session: "x1"}, now.Add(time.Minute), now.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, _ := b.Revoked(ctx, Selector{Session: "x1"}, now.Add(30*time.Second)); !ok {
		t.Fatal("an updated entry was not read again")
	}

	restarted := newStorageRevocations(t, storage, clock)
	for _, sel := range []Selector{{Session: "x1"}, {SID: "s1"}, {Subject: "u1"}} {
		if ok, _ := restarted.Revoked(ctx, sel, issued); !ok {
			t.Fatalf("%+v: not revoked after a restart", sel)
		}
	}
}

// TestStorageRevocationsDeleteEndedFiles: once every entry of a file has
// ended, the file is deleted, so storage does not grow without bound.
func TestStorageRevocationsDeleteEndedFiles(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	storage := &certmagic.FileStorage{Path: dir}
	clock := &fakeClock{t: time.Now()}
	a := newStorageRevocations(t, storage, clock)
	if err := a.Revoke(ctx, Selector{Session: "x"}, clock.Now(), clock.Now().Add(30*time.Minute)); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "oidc_auth/revocations/test/*"))
	if len(files) != 1 {
		t.Fatalf("%d files after one revocation, want 1", len(files))
	}
	clock.Advance(2 * time.Hour)
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "oidc_auth/revocations/test/*")); len(files) != 0 {
		t.Fatalf("ended files left: %v", files)
	}
	if ok, _ := a.Revoked(ctx, Selector{Session: "x"}, clock.Now().Add(-3*time.Hour)); ok {
		t.Fatal("an ended revocation still counts")
	}
}
