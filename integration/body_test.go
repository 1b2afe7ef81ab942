package integration

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/oidcgate/caddy-oidc/internal/testop"
)

// TestRequestBodiesCannotPinMemory: with `in body`, the buffer for a body
// used to be sized from the declared Content-Length before any byte
// arrived: 16 requests that sent only their headers pinned 128 MiB at an
// 8 MiB body_max_size. Memory now grows with the bytes received.
func TestRequestBodiesCannotPinMemory(t *testing.T) {
	p := newProvider(t, testop.Config{})
	up := newUpstream(t)
	s, b := injectSite(t, p, up, "in body\n\t\tbody_max_size 8MiB", "")
	cookie := b.cookieHeader(s)
	host := strings.TrimPrefix(s.url, "http://")

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	var conns []net.Conn
	for range 16 {
		c, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		fmt.Fprintf(c, "POST /api HTTP/1.1\r\nHost: %s\r\nCookie: %s\r\nSec-Fetch-Site: same-origin\r\n"+
			"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n{\"a\":\"", host, cookie, 8<<20)
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	time.Sleep(300 * time.Millisecond) // every request is waiting for its body now
	runtime.GC()
	var during runtime.MemStats
	runtime.ReadMemStats(&during)
	if grew := int64(during.HeapInuse) - int64(before.HeapInuse); grew > 16<<20 {
		t.Fatalf("16 requests that sent only headers hold %d MiB", grew>>20)
	}

	// The requests still work when their bodies come.
	c := conns[0]
	rest := 8<<20 - len(`{"a":"`)
	body := placeholder + `"` + strings.Repeat(" ", rest-len(placeholder)-2) + "}"
	if _, err := c.Write([]byte(body)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the completed request: %d", resp.StatusCode)
	}
	if got := up.lastRequest(); !strings.Contains(got.body, `{"a":"`+accessTokens(p)[0]+`"`) || got.contentLength != int64(len(got.body)) {
		t.Fatalf("upstream got %.80q (Content-Length %d for %d bytes)", got.body, got.contentLength, len(got.body))
	}
}
