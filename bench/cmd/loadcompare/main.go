// Command loadcompare measures, on loopback, what signing users in costs a
// Caddy site: the same load against the same upstream through
//
//	A  Caddy reverse_proxy alone (the ceiling),
//	B  Caddy with oidc_auth + token_inject (cookie, memory and Redis session
//	   stores), the placeholder in an Authorization header swapped for the
//	   user's access token,
//	C  Caddy forward_auth to oauth2-proxy, the usual setup today,
//
// and writes requests/s, p50/p99 latency, peak RSS and the ratios into
// docs/PERFORMANCE.md between <!-- loadcompare:begin --> and
// <!-- loadcompare:end -->. `make bench` runs it; see the bench target of
// the Makefile for the flags it is given.
//
// Each front end is a Caddy process of its own (for C with an oauth2-proxy
// process), signed in by walking the real sign-in (the test provider
// auto-approves) and checked (the request reaches the upstream; with B the
// upstream got a valid access token instead of the placeholder, with C it got
// X-Auth-Request-Access-Token). All of them run from the start; in each
// round wrk loads one after the other, so that the machine's drift affects
// them alike, and the report takes medians over the rounds. Every process is
// stopped at the end, also on failure, timeout or interrupt.
package main

import (
	"context"
	"crypto/rand"
	"debug/buildinfo"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/oidcgate/caddy-oidc/internal/testop"
)

const (
	beginMarker = "<!-- loadcompare:begin -->"
	endMarker   = "<!-- loadcompare:end -->"
	placeholder = "<<APPSMITH_USER_OAUTH2_ACCESS_TOKEN>>"
)

type config struct {
	caddy, oauth2Proxy, redisServer string
	load                            loadSettings
	warmup                          time.Duration
	rounds                          int
	only, profile                   []string
	doc, outDir                     string
	writeBuffer                     string
	timeout                         time.Duration
	splitCPUs                       bool
}

func main() {
	var cfg config
	var only, profile string
	flag.StringVar(&cfg.caddy, "caddy", "bin/caddy", "Caddy built with the plugin (`make bin/caddy`)")
	flag.StringVar(&cfg.oauth2Proxy, "oauth2-proxy", "bin/oauth2-proxy", "oauth2-proxy binary")
	flag.StringVar(&cfg.redisServer, "redis-server", "redis-server", "redis-server binary")
	flag.StringVar(&cfg.load.wrk, "wrk", "wrk", "wrk binary")
	flag.IntVar(&cfg.load.threads, "threads", 2, "wrk threads")
	flag.IntVar(&cfg.load.connections, "connections", 32, "concurrent keep-alive connections")
	flag.DurationVar(&cfg.load.duration, "duration", 3*time.Second, "measured time per front end and round (whole seconds)")
	flag.IntVar(&cfg.rounds, "rounds", 5, "rounds; each loads every front end once, in turn, and the report takes the medians")
	flag.DurationVar(&cfg.warmup, "warmup", 2*time.Second, "unmeasured load before a front end's first round (whole seconds; 0: none)")
	flag.StringVar(&only, "only", "", "comma-separated front ends to run (a,b-cookie,a-id,b-memory,b-redis,c); the document is rewritten only when all run")
	flag.StringVar(&profile, "profile", "", "comma-separated front ends to run once more, after the measurements, with Caddy's admin endpoint on, taking a CPU profile under the same load")
	flag.StringVar(&cfg.writeBuffer, "write-buffer", "", "for experiments: `size` of the write buffer of every reverse_proxy transport to the upstream (Caddy's default: 4KiB)")
	flag.StringVar(&cfg.doc, "doc", "docs/PERFORMANCE.md", "document to rewrite; empty: print only")
	flag.StringVar(&cfg.outDir, "out", "bench/out", "directory for wrk's raw output, Caddyfiles, logs and profiles")
	flag.BoolVar(&cfg.splitCPUs, "split-cpus", true, "run the front end under test on the upper half of the CPUs, wrk, the upstream and the provider on the lower half (false: all share every CPU)")
	flag.DurationVar(&cfg.timeout, "timeout", 0, "bound on the whole run (0: 2 minutes more than the load itself takes)")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("loadcompare: ")
	if only != "" {
		cfg.only = strings.Split(only, ",")
	}
	if profile != "" {
		cfg.profile = strings.Split(profile, ",")
	}
	for _, k := range append(slices.Clone(cfg.only), cfg.profile...) {
		if !slices.ContainsFunc(frontEnds, func(fe frontEnd) bool { return fe.key == k }) {
			log.Fatalf("unknown front end %q", k)
		}
	}
	if cfg.rounds < 1 {
		log.Fatal("-rounds must be at least 1")
	}
	if cfg.load.duration < time.Second || cfg.load.duration%time.Second != 0 || cfg.warmup%time.Second != 0 {
		log.Fatal("-duration and -warmup must be whole seconds (wrk's unit), -duration at least 1s")
	}

	if cfg.timeout <= 0 {
		n := len(frontEnds)
		if len(cfg.only) > 0 {
			n = len(cfg.only)
		}
		perRound := cfg.load.duration + time.Second // + quiescing, wrk start
		cfg.timeout = 2*time.Minute + time.Duration(n*cfg.rounds)*perRound +
			time.Duration(n+len(cfg.profile))*(cfg.warmup+perRound)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ctx, cancelTimeout := context.WithTimeout(ctx, cfg.timeout)
	err := run(ctx, cfg)
	stopAll() // whatever happened, no Caddy, oauth2-proxy or redis-server stays
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("%w (%v)", err, context.Cause(ctx))
	}
	cancelTimeout()
	cancel()
	if err != nil {
		log.Fatal(err)
	}
}

// bench is the shared state of a run.
type bench struct {
	cfg          config
	work         string // temporary files
	op           *testop.Provider
	up           *upstream
	upAddr       string
	redisAddr    string
	redis        *proc
	sessionKey   string
	cookieSecret string
	versions     versions
}

// result is one front end's measurements.
type result struct {
	fe               frontEnd
	rounds           []loadResult // in round order
	rps              float64      // median over the rounds
	p50, p99         time.Duration
	frontCPU, allCPU time.Duration // per request
	rss              []namedRSS    // Caddy first
	upstreamRequests int64
	wrkCommand       string
	cookieBytes      int // length of the Cookie header sent
}

type namedRSS struct {
	name  string
	bytes int64
}

// prepared is a front end that runs, signed in and checked.
type prepared struct {
	fe      frontEnd
	in      *instance
	headers []string // what wrk sends
	res     *result
}

func run(ctx context.Context, cfg config) error {
	for _, bin := range []*string{&cfg.caddy, &cfg.oauth2Proxy, &cfg.redisServer, &cfg.load.wrk} {
		p, err := exec.LookPath(*bin)
		if err != nil {
			return fmt.Errorf("%s not found (`make bench` installs or builds it): %w", *bin, err)
		}
		if *bin, err = filepath.Abs(p); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Join(cfg.outDir, "logs"), 0o755); err != nil {
		return err
	}
	if cfg.splitCPUs {
		s, ok, err := newCPUSplit()
		switch {
		case err != nil:
			return err
		case !ok:
			log.Print("fewer than 2 CPUs: the front ends share the CPU with wrk and the upstream")
		default:
			if err := s.pinSelf(); err != nil {
				return err
			}
			runtime.GOMAXPROCS(len(s.driver))
			split = &s
		}
	}
	work, err := os.MkdirTemp("", "loadcompare-")
	if err != nil {
		return err
	}
	defer func() {
		stopAll() // before removing the directories they use
		os.RemoveAll(work)
	}()

	b := &bench{cfg: cfg, work: work, sessionKey: randomB64(32), cookieSecret: randomB64(24)}
	b.versions = collectVersions(cfg)
	// Realistic tokens: a ~1.5 KB ID token and a 1.2 KB access token, valid
	// for a day so that nothing is refreshed during the run.
	b.op, err = testop.New(testop.Config{
		ClientID:        "loadcompare",
		ClientSecret:    randomB64(24),
		IDTokenPadding:  1500,
		AccessTokenSize: 1200,
		AccessTokenTTL:  24 * time.Hour,
	})
	if err != nil {
		return err
	}
	defer b.op.Close()
	stopUpstream, err := b.startUpstream()
	if err != nil {
		return err
	}
	defer stopUpstream()

	selected := frontEnds
	if len(cfg.only) > 0 {
		selected = slices.DeleteFunc(slices.Clone(frontEnds), func(fe frontEnd) bool { return !slices.Contains(cfg.only, fe.key) })
	}
	// Every front end runs from the start (idle ones cost nothing), so
	// that the rounds can interleave them: on a shared 2-core VM the speed
	// of the machine drifts by more than the differences measured, and
	// interleaving exposes all front ends to the same drift.
	preps, err := b.prepareAll(ctx, selected, false)
	if err != nil {
		return err
	}
	for r := range cfg.rounds {
		// Each round starts at another front end, so none is always
		// measured right after the same neighbour.
		for i := range preps {
			p := preps[(i+r)%len(preps)]
			lr, err := b.measure(ctx, p, r == 0, false)
			if err != nil {
				return fmt.Errorf("%s, round %d: %w", p.fe.key, r+1, err)
			}
			p.res.rounds = append(p.res.rounds, lr)
			front, all := lr.cpuPerRequest()
			log.Printf("round %d/%d %-8s %6.0f req/s, p50 %v, p99 %v, CPU/request: front end %v, all %v",
				r+1, cfg.rounds, p.fe.key, lr.rps, lr.p50, lr.p99, front, all)
		}
	}
	var results []result
	for _, p := range preps {
		if err := p.finish(b); err != nil {
			return err
		}
		results = append(results, *p.res)
	}
	stopAll()
	b.redis = nil // stopped: a profile run of the Redis store starts another

	if len(cfg.profile) > 0 {
		var fes []frontEnd
		for _, fe := range frontEnds {
			if slices.Contains(cfg.profile, fe.key) {
				fes = append(fes, fe)
			}
		}
		preps, err := b.prepareAll(ctx, fes, true)
		if err != nil {
			return err
		}
		for _, p := range preps {
			log.Printf("%s: CPU profile run ...", p.fe.key)
			if _, err := b.measure(ctx, p, true, true); err != nil {
				return fmt.Errorf("%s (profile): %w", p.fe.key, err)
			}
		}
		stopAll()
	}

	rep := report{results: results, versions: b.versions, cfg: cfg, when: time.Now().UTC()}
	fmt.Println()
	fmt.Print(rep.summary())
	if len(results) != len(frontEnds) {
		log.Printf("not every front end ran: %s left as it was", cfg.doc)
		return nil
	}
	if cfg.doc != "" {
		if err := rep.writeDoc(cfg.doc); err != nil {
			return err
		}
		log.Printf("rewrote the load comparison in %s", cfg.doc)
	}
	return nil
}

// prepareAll starts the front ends, signs each in and checks that the
// signed-in request reaches the upstream as intended. The B front ends come
// first: each A is sent the cookies of the B it is compared with.
func (b *bench) prepareAll(ctx context.Context, fes []frontEnd, admin bool) ([]*prepared, error) {
	preps := make([]*prepared, len(fes))
	byKey := map[string]*prepared{}
	order := slices.Clone(fes)
	slices.SortStableFunc(order, func(x, y frontEnd) int {
		return map[bool]int{true: 1, false: 0}[x.kind == proxyOnly] - map[bool]int{true: 1, false: 0}[y.kind == proxyOnly]
	})
	for _, fe := range order {
		if (fe.store == "redis" || (fe.kind == proxyOnly && fe.cookieFrom == "b-redis")) && b.redis == nil {
			if err := b.startRedis(ctx); err != nil {
				return nil, err
			}
		}
		p := &prepared{fe: fe, res: &result{fe: fe}}
		var cookie string
		if fe.kind == proxyOnly {
			// A ignores the cookies; they make its request the same as
			// that of the B it is compared with.
			if from := byKey[fe.cookieFrom]; from != nil {
				cookie = strings.TrimPrefix(from.headers[0], "Cookie: ")
			} else {
				from := frontEnds[slices.IndexFunc(frontEnds, func(f frontEnd) bool { return f.key == fe.cookieFrom })]
				in, err := b.startFrontEnd(ctx, from, false, "for-"+fe.key)
				if err != nil {
					return nil, err
				}
				cookie, err = signIn(ctx, in.base, b.op.Issuer())
				in.stop()
				if err != nil {
					return nil, fmt.Errorf("signing in to %s to get cookies for %s: %w", from.key, fe.key, err)
				}
			}
		}
		var err error
		if p.in, err = b.startFrontEnd(ctx, fe, admin, ""); err != nil {
			return nil, err
		}
		if fe.kind != proxyOnly {
			if cookie, err = signIn(ctx, p.in.base, b.op.Issuer()); err != nil {
				return nil, fmt.Errorf("%s: %w", fe.key, err)
			}
		}
		p.headers = []string{"Cookie: " + cookie, "Authorization: Bearer " + placeholder}
		p.res.cookieBytes = len(cookie)
		p.res.wrkCommand = strings.Join(append([]string{"wrk"}, shellQuote(b.cfg.load.args(b.cfg.load.duration, "http://127.0.0.1:PORT/",
			[]string{"Cookie: <session cookies>", p.headers[1]}))...), " ")
		if err := b.verify(ctx, fe, p.in.base, p.headers); err != nil {
			return nil, fmt.Errorf("%s: %w", fe.key, err)
		}
		byKey[fe.key] = p
		preps[slices.IndexFunc(fes, func(f frontEnd) bool { return f.key == fe.key })] = p
	}
	return preps, nil
}

// measure loads the front end for the configured duration (after the
// warm-up if warm) and checks that every request was served as signed in.
// With profile, it takes a CPU profile of Caddy meanwhile.
func (b *bench) measure(ctx context.Context, p *prepared, warm, profile bool) (loadResult, error) {
	url := p.in.base + "/"
	if warm && b.cfg.warmup > 0 {
		if _, err := runWrk(ctx, b.cfg.load, b.cfg.warmup, url, p.headers); err != nil {
			return loadResult{}, fmt.Errorf("warm-up: %w", err)
		}
	}
	var prof chan error
	if profile {
		prof = make(chan error, 1)
		go func() { prof <- b.cpuProfile(ctx, p.fe, p.in.adminAddr) }()
	}
	pids := p.in.pids()
	if p.fe.store == "redis" {
		pids = append(pids, b.redis.pid())
	}
	frontBefore, err := sumCPU(pids)
	if err != nil {
		return loadResult{}, err
	}
	// Requests still under way when a wrk run ends reach the upstream a
	// little later; they must not count for the next front end.
	b.up.quiesce(ctx)
	stealBefore, totalBefore := cpuSteal()
	selfBefore := selfCPU()
	before := b.up.requests.Load()
	leakedBefore := b.up.placeholders.Load()
	lr, err := runWrk(ctx, b.cfg.load, b.cfg.load.duration, url, p.headers)
	if err != nil {
		return lr, err
	}
	stealAfter, totalAfter := cpuSteal()
	lr.steal, lr.cpuTotal = stealAfter-stealBefore, totalAfter-totalBefore
	b.up.quiesce(ctx)
	lr.selfCPU = selfCPU() - selfBefore
	frontAfter, err := sumCPU(pids)
	if err != nil {
		return lr, err
	}
	lr.frontCPU = frontAfter - frontBefore
	got := b.up.requests.Load() - before
	leaked := b.up.placeholders.Load() - leakedBefore
	name := fmt.Sprintf("wrk-%s-round%d.txt", p.fe.key, len(p.res.rounds)+1)
	if profile {
		name = "wrk-" + p.fe.key + "-profile.txt"
	}
	_ = os.WriteFile(filepath.Join(b.cfg.outDir, name), []byte(lr.rawOutput), 0o644)
	if profile {
		return lr, <-prof
	}
	p.res.upstreamRequests += got
	switch {
	case lr.non2xx > 0:
		return lr, fmt.Errorf("%d of %d responses were not 2xx/3xx: the session did not hold", lr.non2xx, lr.requests)
	case got < lr.requests:
		// C answers an unauthenticated request with a 302, which wrk does
		// not count as an error; the upstream's count catches it.
		return lr, fmt.Errorf("wrk completed %d requests but the upstream got only %d", lr.requests, got)
	case p.fe.kind == pluginFront && leaked > 0:
		return lr, fmt.Errorf("%d requests reached the upstream with the placeholder instead of the token", leaked)
	}
	if lr.sockErrs > 0 {
		log.Printf("%s: warning: wrk reported %d socket errors", p.fe.key, lr.sockErrs)
	}
	return lr, nil
}

// finish computes the medians and reads the processes' peak RSS.
func (p *prepared) finish(b *bench) error {
	r := p.res
	r.rps = median(r.rounds, func(l loadResult) float64 { return l.rps })
	r.p50 = time.Duration(median(r.rounds, func(l loadResult) float64 { return float64(l.p50) }))
	r.p99 = time.Duration(median(r.rounds, func(l loadResult) float64 { return float64(l.p99) }))
	r.frontCPU = time.Duration(median(r.rounds, func(l loadResult) float64 { f, _ := l.cpuPerRequest(); return float64(f) }))
	r.allCPU = time.Duration(median(r.rounds, func(l loadResult) float64 { _, a := l.cpuPerRequest(); return float64(a) }))
	for _, pr := range p.in.procs() {
		rss, err := peakRSS(pr.pid())
		if err != nil {
			return fmt.Errorf("%s %s: %w", p.fe.key, pr.name, err)
		}
		r.rss = append(r.rss, namedRSS{pr.name, rss})
	}
	if p.fe.store == "redis" {
		if rss, err := peakRSS(b.redis.pid()); err == nil {
			r.rss = append(r.rss, namedRSS{"redis-server", rss})
		}
	}
	return nil
}

// median of f over the rounds (the mean of the middle two for an even
// count).
func median[T any](xs []T, f func(T) float64) float64 {
	v := make([]float64, len(xs))
	for i, x := range xs {
		v[i] = f(x)
	}
	slices.Sort(v)
	switch n := len(v); {
	case n == 0:
		return 0
	case n%2 == 1:
		return v[n/2]
	default:
		return (v[n/2-1] + v[n/2]) / 2
	}
}

// instance is a running front end.
type instance struct {
	base      string // http://127.0.0.1:PORT
	adminAddr string
	caddy     *proc
	oauth2    *proc
}

func (in *instance) procs() []*proc {
	if in.oauth2 != nil {
		return []*proc{in.caddy, in.oauth2}
	}
	return []*proc{in.caddy}
}

func (in *instance) pids() []int {
	var pids []int
	for _, p := range in.procs() {
		pids = append(pids, p.pid())
	}
	return pids
}

func sumCPU(pids []int) (time.Duration, error) {
	var sum time.Duration
	for _, pid := range pids {
		t, err := procCPU(pid)
		if err != nil {
			return 0, err
		}
		sum += t
	}
	return sum, nil
}

func (in *instance) stop() {
	for _, p := range in.procs() {
		p.stop()
	}
}

// startFrontEnd starts Caddy (and for C oauth2-proxy first) and waits until
// they serve. Files are named after the front end and tag.
func (b *bench) startFrontEnd(ctx context.Context, fe frontEnd, admin bool, tag string) (*instance, error) {
	name := fe.key
	if tag != "" {
		name += "-" + tag
	}
	if admin {
		name += "-profile"
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	in := &instance{base: "http://127.0.0.1:" + strconv.Itoa(port)}
	p := caddyParams{
		port:         port,
		storageDir:   filepath.Join(b.work, name, "storage"),
		upstreamAddr: b.upAddr,
		issuer:       b.op.Issuer(),
		clientID:     b.op.ClientID(),
		sessionKey:   b.sessionKey,
		redisAddr:    b.redisAddr,
		writeBuffer:  b.cfg.writeBuffer,
	}
	if admin {
		aport, err := freePort()
		if err != nil {
			return nil, err
		}
		p.adminAddr = "127.0.0.1:" + strconv.Itoa(aport)
		in.adminAddr = p.adminAddr
	}
	if fe.kind == oauth2Proxy {
		oport, err := freePort()
		if err != nil {
			return nil, err
		}
		p.oauth2Addr = "127.0.0.1:" + strconv.Itoa(oport)
		args := oauth2ProxyArgs(p.oauth2Addr, b.op.Issuer(), b.op.ClientID(), b.op.ClientSecret(),
			in.base+"/oauth2/callback", b.cookieSecret)
		in.oauth2, err = startProc("oauth2-proxy", filepath.Join(b.cfg.outDir, "logs", name+"-oauth2-proxy.log"), nil, b.cfg.oauth2Proxy, args...)
		if err != nil {
			return nil, err
		}
		if err := waitReady(ctx, in.oauth2, 20*time.Second, httpCheck("http://"+p.oauth2Addr+"/ping")); err != nil {
			in.oauth2.stop()
			return nil, err
		}
	}
	dir := filepath.Join(b.work, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	caddyfile := filepath.Join(b.cfg.outDir, "Caddyfile."+name)
	if err := os.WriteFile(caddyfile, []byte(fe.caddyfile(p)), 0o644); err != nil {
		return nil, err
	}
	env := []string{
		"BENCH_OIDC_CLIENT_SECRET=" + b.op.ClientSecret(),
		"XDG_CONFIG_HOME=" + filepath.Join(dir, "config"),
		"XDG_DATA_HOME=" + filepath.Join(dir, "data"),
	}
	in.caddy, err = startProc("caddy", filepath.Join(b.cfg.outDir, "logs", name+"-caddy.log"), env,
		b.cfg.caddy, "run", "--config", caddyfile, "--adapter", "caddyfile")
	if err != nil {
		in.stop()
		return nil, err
	}
	if err := waitReady(ctx, in.caddy, 20*time.Second, dialCheck(strings.TrimPrefix(in.base, "http://"))); err != nil {
		in.stop()
		return nil, err
	}
	return in, nil
}

// verify checks, before any load, that the signed-in request reaches the
// upstream as intended and that one without the session does not.
func (b *bench) verify(ctx context.Context, fe frontEnd, base string, headers []string) error {
	v, status, err := getVerdict(ctx, base, headers)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("the signed-in request got %d, not the upstream's 200", status)
	}
	switch fe.kind {
	case pluginFront:
		if !v.AuthorizationValid || v.AuthorizationPlaceholder {
			return fmt.Errorf("the upstream did not get the user's access token in Authorization: %+v", v)
		}
	case oauth2Proxy:
		if !v.ForwardedTokenValid || v.ForwardedUser == "" {
			return fmt.Errorf("the upstream did not get X-Auth-Request-Access-Token/-User from oauth2-proxy: %+v", v)
		}
	}
	if fe.kind == proxyOnly {
		return nil
	}
	// Without the cookie: B answers 401, C redirects to the sign-in.
	if _, status, err = getVerdict(ctx, base, headers[1:]); err != nil {
		return err
	}
	if status == http.StatusOK {
		return fmt.Errorf("a request without the session reached the upstream")
	}
	return nil
}

func getVerdict(ctx context.Context, base string, headers []string) (verdict, int, error) {
	var v verdict
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/verify", nil)
	if err != nil {
		return v, 0, err
	}
	for _, h := range headers {
		k, val, _ := strings.Cut(h, ": ")
		req.Header.Set(k, val)
	}
	c := http.Client{
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := c.Do(req)
	if err != nil {
		return v, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		if err := decodeJSON(resp.Body, &v); err != nil {
			return v, 0, fmt.Errorf("the upstream's /verify answer: %w", err)
		}
	}
	return v, resp.StatusCode, nil
}

// cpuProfile takes a CPU profile of Caddy through its admin endpoint while
// the load runs, and prints its top entries.
func (b *bench) cpuProfile(ctx context.Context, fe frontEnd, adminAddr string) error {
	secs := int(b.cfg.load.duration/time.Second) - 1
	if secs < 1 {
		secs = 1
	}
	time.Sleep(500 * time.Millisecond) // let the load start
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", adminAddr, secs)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Timeout: time.Duration(secs+30) * time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1000))
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
	}
	path := filepath.Join(b.cfg.outDir, "cpu-"+fe.key+".pprof")
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-nodecount=40", b.cfg.caddy, path).CombinedOutput()
	if err != nil {
		return fmt.Errorf("go tool pprof: %v\n%s", err, out)
	}
	top := filepath.Join(b.cfg.outDir, "cpu-"+fe.key+".top.txt")
	_ = os.WriteFile(top, out, 0o644)
	fmt.Printf("\n--- CPU profile of Caddy, %s (%s, %s) ---\n%s\n", fe.key, path, top, out)
	return nil
}

// startRedis runs a throwaway redis-server on loopback for the Redis
// session store; stopAll ends it.
func (b *bench) startRedis(ctx context.Context) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	dir := filepath.Join(b.work, "redis")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	b.redisAddr = "127.0.0.1:" + strconv.Itoa(port)
	b.redis, err = startProc("redis-server", filepath.Join(b.cfg.outDir, "logs", "redis-server.log"), nil, b.cfg.redisServer,
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--protected-mode", "no")
	if err != nil {
		return err
	}
	return waitReady(ctx, b.redis, 10*time.Second, func() error {
		c, err := net.DialTimeout("tcp", b.redisAddr, time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(time.Second))
		if _, err := c.Write([]byte("PING\r\n")); err != nil {
			return err
		}
		buf := make([]byte, 7)
		if _, err := io.ReadFull(c, buf); err != nil {
			return err
		}
		if string(buf) != "+PONG\r\n" {
			return fmt.Errorf("PING answered %q", buf)
		}
		return nil
	})
}

// versions are the software versions the report names.
type versions struct {
	goVersion, caddy, caddyGo, oauth2Proxy, redis, wrk string
}

func collectVersions(cfg config) versions {
	v := versions{goVersion: runtime.Version(), caddy: "unknown", oauth2Proxy: "unknown", redis: "unknown"}
	if bi, err := buildinfo.ReadFile(cfg.caddy); err == nil {
		v.caddyGo = bi.GoVersion
		for _, d := range bi.Deps {
			if d.Path == "github.com/caddyserver/caddy/v2" {
				v.caddy = d.Version
			}
		}
	}
	if bi, err := buildinfo.ReadFile(cfg.oauth2Proxy); err == nil {
		v.oauth2Proxy = bi.Main.Version
	}
	out, _ := exec.Command(cfg.redisServer, "--version").Output()
	if m := regexp.MustCompile(`v=(\S+)`).FindSubmatch(out); m != nil {
		v.redis = string(m[1])
	}
	v.wrk = wrkVersion(cfg.load.wrk)
	return v
}

func randomB64(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// shellQuote quotes the arguments that need it for a POSIX shell.
func shellQuote(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if a != "" && !strings.ContainsAny(a, " '\"<>*?;&|$`\\(){}[]!#~") {
			out[i] = a
			continue
		}
		out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return out
}

var errNoSession = errors.New("the sign-in ended without a session cookie")
