package main

import (
	"testing"
	"time"
)

const wrkSample = `Running 2s test @ http://127.0.0.1:18181/
  2 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.73ms    2.52ms  30.03ms   93.15%
    Req/Sec   560.12     96.56   737.00     55.00%
  Latency Distribution
     50%  812.00us
     75%    4.03ms
     90%    5.50ms
     99%   15.30ms
  2234 requests in 2.01s, 1.11MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 7
Requests/sec:   1114.04
Transfer/sec:    565.81KB
`

func TestParseWrk(t *testing.T) {
	r, err := parseWrk(wrkSample)
	if err != nil {
		t.Fatal(err)
	}
	if r.requests != 2234 || r.duration != 2010*time.Millisecond || r.rps != 1114.04 {
		t.Errorf("requests %d in %v, %v/s", r.requests, r.duration, r.rps)
	}
	if r.p50 != 812*time.Microsecond || r.p99 != 15300*time.Microsecond {
		t.Errorf("p50 %v, p99 %v", r.p50, r.p99)
	}
	if r.non2xx != 7 || r.sockErrs != 3 {
		t.Errorf("non-2xx %d, socket errors %d", r.non2xx, r.sockErrs)
	}
	if _, err := parseWrk("Running 2s test @ x\nunable to connect\n"); err == nil {
		t.Error("output without results was accepted")
	}
}

func TestWrkArgs(t *testing.T) {
	s := loadSettings{threads: 2, connections: 32}
	got := s.args(10*time.Second, "http://h/", []string{"A: b"})
	want := []string{"-t2", "-c32", "-d10s", "--latency", "-H", "A: b", "http://h/"}
	if len(got) != len(want) {
		t.Fatalf("%q", got)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%q, want %q", got, want)
		}
	}
}
