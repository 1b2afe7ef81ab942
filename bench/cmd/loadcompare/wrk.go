package main

// The load generator is wrk (Debian's package), not a Go program in this
// repository. On a 2-core machine the generator competes for the CPU with
// Caddy, the upstream and (for C) oauth2-proxy; wrk is a small C event loop
// that spends far less CPU per request than a Go closed-loop client with
// net/http would, so more of the machine goes to the front end being
// measured, and it is the same, well-known tool for every front end. It runs
// closed-loop: each connection (keep-alive) sends its next request when the
// previous answer arrived, for a fixed duration. Its latency percentiles
// come from its own histogram of every request's time.

import (
	"context"
	"fmt"
	"math"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// loadResult is what one wrk run measured.
type loadResult struct {
	requests  int64
	duration  time.Duration
	rps       float64
	p50, p99  time.Duration
	non2xx    int64 // "Non-2xx or 3xx responses"
	sockErrs  int64 // connect + read + write + timeout errors
	rawOutput string

	// CPU time spent during the run by wrk, by the front end's processes
	// (Caddy, oauth2-proxy, redis-server) and by this program (the
	// upstream and the provider).
	wrkCPU, frontCPU, selfCPU time.Duration
	// The machine's CPU time stolen by the hypervisor, and all its CPU
	// time, during the run (clock ticks, from /proc/stat).
	steal, cpuTotal int64
}

// cpuPerRequest is the CPU time per request of the front end and of every
// process involved.
func (r loadResult) cpuPerRequest() (front, all time.Duration) {
	if r.requests == 0 {
		return 0, 0
	}
	n := time.Duration(r.requests)
	return r.frontCPU / n, (r.frontCPU + r.wrkCPU + r.selfCPU) / n
}

type loadSettings struct {
	wrk         string // binary
	threads     int
	connections int
	duration    time.Duration
}

// args are wrk's arguments for a run of d against url with the headers.
func (s loadSettings) args(d time.Duration, url string, headers []string) []string {
	a := []string{
		"-t" + strconv.Itoa(s.threads), "-c" + strconv.Itoa(s.connections),
		"-d" + strconv.Itoa(int(d.Round(time.Second)/time.Second)) + "s", "--latency",
	}
	for _, h := range headers {
		a = append(a, "-H", h)
	}
	return append(a, url)
}

// runWrk runs wrk for d and parses its report.
func runWrk(ctx context.Context, s loadSettings, d time.Duration, url string, headers []string) (loadResult, error) {
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.wrk, s.args(d, url, headers)...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		if o := strings.TrimSpace(string(out)); o != "" {
			return loadResult{}, fmt.Errorf("wrk: %v\n%s", err, o)
		}
		return loadResult{}, fmt.Errorf("wrk: %v", err)
	}
	r, err := parseWrk(string(out))
	if err != nil {
		return loadResult{}, fmt.Errorf("%v\n%s", err, out)
	}
	r.wrkCPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	return r, nil
}

var (
	wrkTotal   = regexp.MustCompile(`(?m)^\s*(\d+) requests in ([\d.]+)(us|ms|s|m),`)
	wrkRPS     = regexp.MustCompile(`(?m)^Requests/sec:\s+([\d.]+)`)
	wrkPercent = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([\d.]+)(us|ms|s|m)\s*$`)
	wrkNon2xx  = regexp.MustCompile(`(?m)^\s*Non-2xx or 3xx responses: (\d+)`)
	wrkSockErr = regexp.MustCompile(`(?m)^\s*Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
)

// parseWrk reads the report wrk 4 prints with --latency.
func parseWrk(out string) (loadResult, error) {
	r := loadResult{rawOutput: out}
	m := wrkTotal.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("wrk output has no request count")
	}
	r.requests, _ = strconv.ParseInt(m[1], 10, 64)
	var err error
	if r.duration, err = wrkDuration(m[2], m[3]); err != nil {
		return r, err
	}
	m = wrkRPS.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("wrk output has no Requests/sec")
	}
	r.rps, _ = strconv.ParseFloat(m[1], 64)
	for _, m := range wrkPercent.FindAllStringSubmatch(out, -1) {
		d, err := wrkDuration(m[2], m[3])
		if err != nil {
			return r, err
		}
		if m[1] == "50" {
			r.p50 = d
		} else {
			r.p99 = d
		}
	}
	if r.p50 == 0 || r.p99 == 0 {
		return r, fmt.Errorf("wrk output has no 50%%/99%% latency (was --latency given?)")
	}
	if m := wrkNon2xx.FindStringSubmatch(out); m != nil {
		r.non2xx, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := wrkSockErr.FindStringSubmatch(out); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.ParseInt(s, 10, 64)
			r.sockErrs += n
		}
	}
	return r, nil
}

func wrkDuration(v, unit string) (time.Duration, error) {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return 0, fmt.Errorf("bad wrk number %q", v)
	}
	scale := map[string]float64{"us": 1e3, "ms": 1e6, "s": 1e9, "m": 60e9}[unit]
	return time.Duration(math.Round(f * scale)), nil
}

// wrkVersion is the first line of `wrk -v`, e.g. "wrk debian/4.1.0-3+b2".
func wrkVersion(bin string) string {
	out, _ := exec.Command(bin, "-v").CombinedOutput() // wrk -v exits 1
	line, _, _ := strings.Cut(string(out), "\n")
	if i := strings.Index(line, " ["); i > 0 {
		line = line[:i]
	}
	if line == "" {
		return "wrk (unknown version)"
	}
	return line
}
