package redistest

import (
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
