package redistest

import (
	"context"
	"net"
	"testing"
	"time"
)

func TestStartAnswersPingAndStopRestart(t *testing.T) {
	s := Start(t)
	if err := s.ping(); err != nil {
		t.Fatalf("ping after Start: %v", err)
	}
	s.Stop()
	if c, err := net.DialTimeout("tcp", s.Addr(), time.Second); err == nil {
		c.Close()
		t.Fatal("server still accepts connections after Stop")
	}
	s.Restart()
	if err := s.ping(); err != nil {
		t.Fatalf("ping after Restart: %v", err)
	}
}

func TestWithPasswordRequiresAuth(t *testing.T) {
	s := Start(t, WithPassword("s3cret"))
	if err := s.ping(); err != nil {
		t.Fatalf("ping with password: %v", err)
	}
	s.password = "wrong"
	if err := s.ping(); err == nil {
		t.Fatal("wrong password accepted")
	}
}

// TestSlotMatchesRedis: the slot computed here is the one Redis computes.
func TestSlotMatchesRedis(t *testing.T) {
	cl := StartCluster(t, 3)
	rc := cl.Masters[0].client()
	defer rc.Close()
	for _, key := range []string{"a", "foo", "{user1000}.following", "x{}y", "p:s:{id}", "{a}{b}", "123456789"} {
		want, err := rc.ClusterKeySlot(context.Background(), key).Result()
		if err != nil {
			t.Fatal(err)
		}
		if got := Slot(key); got != int(want) {
			t.Errorf("Slot(%q) = %d, Redis says %d", key, got, want)
		}
	}
}
