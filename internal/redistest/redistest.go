// Package redistest runs a throwaway redis-server for tests, so the Redis
// session store is tested against the real thing rather than a fake whose
// semantics (TTLs, Lua, reconnects) might drift from it.
package redistest

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Server is a redis-server process owned by one test.
type Server struct {
	t        testing.TB
	bin      string
	dir      string
	port     int
	password string
	args     []string
	conf     string      // written to redis.conf and passed first, if set
	tls      *tls.Config // how ping reaches a TLS-only server; nil for TCP

	mu     sync.Mutex
	proc   *os.Process
	exited chan struct{} // closed once proc has been reaped
}

// Option configures Start.
type Option func(*Server)

// WithPassword makes the server require AUTH with p.
func WithPassword(p string) Option { return func(s *Server) { s.password = p } }

// WithArgs passes extra redis-server arguments, e.g. to enable cluster mode.
func WithArgs(args ...string) Option { return func(s *Server) { s.args = append(s.args, args...) } }

// Start runs redis-server on a free 127.0.0.1 port and stops it when the test
// ends. Without a redis-server binary the test is skipped locally, but fails
// when the CI environment variable is set, so CI cannot silently skip Redis.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skip("redis-server not installed")
		}
		t.Fatalf("redis-server not installed (CI is set): %v", err)
	}
	s := &Server{t: t, bin: bin, dir: t.TempDir()}
	for _, o := range opts {
		o(s)
	}
	t.Cleanup(s.Stop)
	// Another process may take the port between probing and binding; retry.
	for attempt := 0; ; attempt++ {
		s.port = freePort(t)
		err := s.start()
		if err == nil {
			return s
		}
		if s.tls != nil && strings.Contains(s.log(), "tls-port") {
			// Debian's redis-server has TLS; a build without it rejects
			// the directive.
			if os.Getenv("CI") == "" {
				t.Skipf("redis-server without TLS: %s", s.log())
			}
			t.Fatalf("redis-server without TLS (CI is set): %s", s.log())
		}
		if attempt == 2 {
			t.Fatalf("starting redis-server: %v\n%s", err, s.log())
		}
	}
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Stop kills the server abruptly, like a crash, for outage tests. It is a
// no-op if the server is not running.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return
	}
	_ = s.proc.Kill()
	<-s.exited
	s.proc = nil
}

// Restart starts the server again on the same port, so existing clients can
// reconnect. Data written before Stop may be gone.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	if err := s.start(); err != nil {
		s.t.Fatalf("restarting redis-server: %v\n%s", err, s.log())
	}
}

func (s *Server) start() error {
	var args []string
	if s.conf != "" {
		// Sentinel wants its configuration in a file it can rewrite.
		path := filepath.Join(s.dir, "redis.conf")
		if _, err := os.Stat(path); err != nil {
			if err := os.WriteFile(path, []byte(s.conf), 0o600); err != nil {
				return err
			}
		}
		args = append(args, path)
	}
	args = append(args,
		"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", s.dir,
		"--protected-mode", "no", "--logfile", filepath.Join(s.dir, "redis.log"),
	)
	if s.tls != nil {
		args = append(args, s.tlsArgs()...)
	}
	if s.password != "" {
		args = append(args, "--requirepass", s.password)
	}
	cmd := exec.Command(s.bin, append(args, s.args...)...)
	cmd.SysProcAttr = sysProcAttr()
	// Configuration errors go to standard error, before the log file is
	// opened.
	stderr, err := os.Create(filepath.Join(s.dir, "redis.stderr"))
	if err != nil {
		return err
	}
	defer stderr.Close()
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := s.ping(); err == nil {
			s.mu.Lock()
			s.proc, s.exited = cmd.Process, exited
			s.mu.Unlock()
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("redis-server exited: %v", waitErr)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("redis-server did not answer PING within 10s")
		}
	}
}

// ping speaks just enough RESP to learn the server is ready, so this package
// does not depend on a Redis client.
func (s *Server) ping() error {
	var c net.Conn
	var err error
	if s.tls != nil {
		c, err = tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", s.Addr(), s.tls)
	} else {
		c, err = net.DialTimeout("tcp", s.Addr(), time.Second)
	}
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	var req strings.Builder
	if s.password != "" {
		fmt.Fprintf(&req, "*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n", len(s.password), s.password)
	}
	req.WriteString("*1\r\n$4\r\nPING\r\n")
	if _, err := c.Write([]byte(req.String())); err != nil {
		return err
	}
	r := bufio.NewReader(c)
	if s.password != "" {
		if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "+OK") {
			return fmt.Errorf("AUTH: %q %v", line, err)
		}
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("PING: %q", line)
	}
	return nil
}

func (s *Server) log() string {
	stderr, _ := os.ReadFile(filepath.Join(s.dir, "redis.stderr"))
	b, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
	return string(stderr) + string(b)
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
