package sessionstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestUnreachableTellsNetworkFailuresFromAnswers: only a node that could
// not be reached makes the cluster client re-read the slot map; an answer
// from Redis, or a caller giving up, does not.
func TestUnreachableTellsNetworkFailuresFromAnswers(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{redis.Nil, false},
		{fmt.Errorf("wrapped: %w", redis.Nil), false},
		{context.Canceled, false},
		{redis.ErrClosed, false},
		{refused, true},
		{fmt.Errorf("wrapped: %w", refused), true},
		{io.EOF, true},
		{context.DeadlineExceeded, true},
		{&net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, true},
	} {
		if got := unreachable(tc.err); got != tc.want {
			t.Errorf("unreachable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// TestClusterReloaderSpacesReloads: however many requests fail while a
// master is down, the slot map is re-read at most once per gap.
func TestClusterReloaderSpacesReloads(t *testing.T) {
	var n atomic.Int32
	r := &clusterReloader{reload: func() { n.Add(1) }}
	refused := errors.New("dial tcp 127.0.0.1:1: connect: connection refused")
	for range 1000 {
		r.check(refused)
	}
	if got := n.Load(); got != 1 {
		t.Fatalf("%d reloads for a burst of failures, want 1", got)
	}
	time.Sleep(clusterReloadGap + 10*time.Millisecond)
	r.check(refused)
	r.check(redis.Nil)
	if got := n.Load(); got != 2 {
		t.Fatalf("%d reloads after the gap, want 2", got)
	}
}
