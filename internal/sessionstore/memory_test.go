package sessionstore

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"
)

func TestMemoryEvictsLeastRecentlyUsed(t *testing.T) {
	m, h := newMemoryHarness(3)
	ctx := context.Background()
	exp := h.now().Add(time.Hour)
	for _, id := range []string{"a", "b", "c"} {
		if err := m.Put(ctx, id, rec(id, "u-"+id, "s-"+id, exp)); err != nil {
			t.Fatal(err)
		}
	}
	mustGet(t, m, "a") // b is now least recently used
	if err := m.Put(ctx, "d", rec("d", "u-d", "s-d", exp)); err != nil {
		t.Fatal(err)
	}
	if m.Len() != 3 {
		t.Fatalf("Len = %d, want 3", m.Len())
	}
	mustNotFind(t, m, "b")
	for _, id := range []string{"a", "c", "d"} {
		mustGet(t, m, id)
	}
	// Eviction must clean the indexes too.
	if len(m.bySubject) != 3 || len(m.bySID) != 3 || m.bySubject["u-b"] != nil {
		t.Fatalf("indexes after eviction: %d subjects, %d sids", len(m.bySubject), len(m.bySID))
	}
	if want := 3 * (1 + 1 + 3 + 3 + entryOverhead); m.Bytes() != want {
		t.Fatalf("Bytes = %d, want %d", m.Bytes(), want)
	}
}

func TestMemorySweepsExpiredRecords(t *testing.T) {
	m, h := newMemoryHarness(100)
	ctx := context.Background()
	for i := range 10 {
		if err := m.Put(ctx, fmt.Sprint(i), rec("x", "u", fmt.Sprint(i), h.now().Add(time.Second))); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok, _ := m.TryLock(ctx, "k", time.Second); !ok {
		t.Fatal("TryLock")
	}
	if err := m.Revoke(ctx, Selector{Subject: "u"}, h.now(), h.now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	h.advance(2 * sweepInterval)
	if err := m.Put(ctx, "live", rec("y", "", "", h.now().Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	if m.Len() != 1 || len(m.bySubject) != 0 || len(m.bySID) != 0 || len(m.locks) != 0 || len(m.revoked.entries) != 0 {
		t.Fatalf("after sweep: %d records, %d subjects, %d sids, %d locks, %d revocations",
			m.Len(), len(m.bySubject), len(m.bySID), len(m.locks), len(m.revoked.entries))
	}
	if want := 4 + 1 + entryOverhead; m.Bytes() != want {
		t.Fatalf("Bytes = %d, want %d", m.Bytes(), want)
	}
}

// A server-side store is worth having only if it does not cost much more than
// the sealed sessions themselves: at most 1.5x for 4 KiB records, counting
// one subject and one sid per session (the worst case for the indexes).
func TestMemoryOverheadForFourKiBRecords(t *testing.T) {
	const n, size = 10_000, 4096
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	m := NewMemory(n)
	ctx := context.Background()
	exp := time.Now().Add(time.Hour)
	for i := range n {
		data := make([]byte, size) // garbage after Put copies it
		data[0] = byte(i)
		id := fmt.Sprintf("%043d", i) // the length of a base64url 256-bit id
		err := m.Put(ctx, id, Record{Data: data, Subject: fmt.Sprintf("user-%d", i), SID: fmt.Sprintf("sid-%d", i), Expires: exp})
		if err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	grown := float64(after.HeapAlloc) - float64(before.HeapAlloc)
	ratio := grown / (n * size)
	t.Logf("heap grew %.1f MiB for %d records of %d B: %.3fx; Bytes() estimates %.1f MiB",
		grown/(1<<20), n, size, ratio, float64(m.Bytes())/(1<<20))
	if ratio > 1.5 {
		t.Fatalf("memory per session is %.3fx the record size, want <= 1.5x", ratio)
	}
	runtime.KeepAlive(m)
}
