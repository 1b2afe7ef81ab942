package main

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/oidcgate/caddy-oidc/bench/benchdoc"
)

type report struct {
	results  []result
	versions versions
	cfg      config
	when     time.Time
}

func (rep report) find(key string) *result {
	for i := range rep.results {
		if rep.results[i].fe.key == key {
			return &rep.results[i]
		}
	}
	return nil
}

// table is the Markdown table of the measurements.
func (rep report) table() string {
	var b strings.Builder
	b.WriteString("| front end | Cookie header | req/s | p50 | p99 | peak RSS | CPU/request: front end, all |\n|---|---:|---:|---:|---:|---|---:|\n")
	for _, r := range rep.results {
		fmt.Fprintf(&b, "| %s | %s B | %s | %s | %s | %s | %.0f µs, %.0f µs |\n", r.fe.label, benchdoc.Thousands(int64(r.cookieBytes)),
			benchdoc.Thousands(int64(r.rps+0.5)), latency(r.p50), latency(r.p99), rssText(r.rss),
			float64(r.frontCPU)/1e3, float64(r.allCPU)/1e3)
	}
	return b.String()
}

// ratios is the Markdown table of B against A (the A sent the same request)
// and C, with the targets of the "Load comparison" issue. Each ratio is the
// median of the per-round ratios: within a round the two were measured
// close together, under the same conditions.
func (rep report) ratios() string {
	var b strings.Builder
	b.WriteString("| ratio | median | rounds (min - max) | target |\n|---|---:|---:|---|\n")
	row := func(name string, x, y *result, of func(loadResult) float64, target string, met func(float64) bool) {
		if x == nil || y == nil {
			return
		}
		var per []float64
		for i := range min(len(x.rounds), len(y.rounds)) {
			per = append(per, of(x.rounds[i])/of(y.rounds[i]))
		}
		v := median(per, func(f float64) float64 { return f })
		verdict := ""
		if target != "" {
			verdict = target + ": " + map[bool]string{true: "met", false: "**missed**"}[met(v)]
		}
		fmt.Fprintf(&b, "| %s | %.2f | %.2f - %.2f | %s |\n", name, v, slices.Min(per), slices.Max(per), verdict)
	}
	rps := func(l loadResult) float64 { return l.rps }
	p99 := func(l loadResult) float64 { return float64(l.p99) }
	frontCPU := func(l loadResult) float64 { f, _ := l.cpuPerRequest(); return float64(f) }
	stores := []struct{ key, name, target string }{
		{"b-cookie", "cookie", "0.90"}, {"b-memory", "memory", ""}, {"b-redis", "Redis", "0.85"},
	}
	for _, s := range stores {
		if x := rep.find(s.key); x != nil {
			row(fmt.Sprintf("B/A req/s, %s store (A: %s)", s.name, x.fe.baseline), x, rep.find(x.fe.baseline), rps,
				cond(s.target != "", "≥ "+s.target), func(v float64) bool { return v >= atof(s.target) })
		}
	}
	for _, s := range stores {
		row("B/C req/s, "+s.name+" store", rep.find(s.key), rep.find("c"), rps,
			cond(s.key == "b-cookie", "≥ 3.0"), func(v float64) bool { return v >= 3.0 })
	}
	// B cannot be faster than the A that does its proxying alone, so A/C
	// is the most B/C can be on this machine.
	row("A/C req/s (A: a; the ceiling of B/C, cookie store)", rep.find("a"), rep.find("c"), rps, "", nil)
	row("A/C req/s (A: a-id; the ceiling of B/C, memory and Redis)", rep.find("a-id"), rep.find("c"), rps, "", nil)
	for _, s := range stores {
		row("front-end CPU/request, C / B, "+s.name+" store", rep.find("c"), rep.find(s.key), frontCPU, "", nil)
	}
	for _, s := range stores {
		if x := rep.find(s.key); x != nil {
			row(fmt.Sprintf("B p99 / A p99, %s store (A: %s)", s.name, x.fe.baseline), x, rep.find(x.fe.baseline), p99,
				cond(s.key == "b-cookie", "≤ 1.2"), func(v float64) bool { return v <= 1.2 })
		}
	}
	return b.String()
}

func cond(ok bool, s string) string {
	if ok {
		return s
	}
	return ""
}

func atof(s string) float64 {
	var f float64
	_, _ = fmt.Sscan(s, &f)
	return f
}

func (rep report) summary() string {
	s := rep.table() + "\n" + rep.ratios()
	if steal := rep.stealShare(); steal >= 0 {
		s += fmt.Sprintf("\nCPU steal during the measurements: %.1f%%\n", steal*100)
	}
	return s
}

func (rep report) stealText() string {
	if steal := rep.stealShare(); steal >= 0 {
		return fmt.Sprintf("%.1f%%", steal*100)
	}
	return "unknown"
}

// sharedCPU is the median over the front ends of the CPU per request
// spent outside the front end (wrk, upstream, provider).
func (rep report) sharedCPU() string {
	v := median(rep.results, func(r result) float64 { return float64(r.allCPU - r.frontCPU) })
	return fmt.Sprintf("about %.0f µs", v/1e3)
}

// stealShare is the share of the machine's CPU time stolen during all
// measurements, or -1 if unknown.
func (rep report) stealShare() float64 {
	var steal, total int64
	for _, r := range rep.results {
		for _, l := range r.rounds {
			steal += l.steal
			total += l.cpuTotal
		}
	}
	if total == 0 {
		return -1
	}
	return float64(steal) / float64(total)
}

// command is how this program was run, as a shell line.
func command() string {
	return strings.Join(append([]string{"go run ./bench/cmd/loadcompare"}, shellQuote(os.Args[1:])...), " ")
}

func (rep report) writeDoc(path string) error {
	v, cfg := rep.versions, rep.cfg
	var b strings.Builder
	fmt.Fprintf(&b, "Measured %s by `make bench` on %s.\n", rep.when.Format("2006-01-02 15:04 UTC"), benchdoc.Machine())
	caddyGo := ""
	if v.caddyGo != "" && v.caddyGo != v.goVersion {
		caddyGo = ", built with " + v.caddyGo
	}
	fmt.Fprintf(&b, "Versions: %s; Caddy %s (`make bin/caddy`: xcaddy with this plugin%s);\n"+
		"oauth2-proxy %s (`go install`); redis-server %s (Debian); %s.\n\n",
		v.goVersion, v.caddy, caddyGo, v.oauth2Proxy, v.redis, v.wrk)
	fmt.Fprintf(&b, `- **Front ends.** Each is a Caddy process of its own (`+"`admin off`"+`, only
  errors logged, plain HTTP on 127.0.0.1) in front of one upstream, a Go
  HTTP server answering a 1 KiB body. A: `+"`reverse_proxy`"+` alone. B:
  `+"`oidc_auth`"+` (cookie, memory or Redis session store) + `+"`token_inject`"+` +
  `+"`reverse_proxy`"+`; the Redis store with its default local cache
  (`+"`local_cache_ttl 2s`"+`: a session read from Redis is served from
  memory, kept current by Redis pub/sub announcements of every change).
  C: `+"`forward_auth`"+` to oauth2-proxy (OIDC with PKCE, its session in its
  own cookie, `+"`--reverse-proxy --set-xauthrequest --pass-access-token`"+`)
  and `+"`reverse_proxy`"+`, as oauth2-proxy documents it for Caddy.
- **Sessions.** The test OpenID provider (`+"`internal/testop`"+`) issues a
  ~1.5 KB ID token and a 1.2 KB access token valid for 24 h, so nothing is
  refreshed. Each front end is signed in through the real sign-in and
  checked: with B the upstream gets a valid access token in
  `+"`Authorization`"+` instead of the placeholder, with C it gets
  `+"`X-Auth-Request-Access-Token`"+`; without the cookie, neither reaches it.
- **Requests.** Every request carries the session's cookies and
  `+"`Authorization: Bearer %[5]s`"+`. A ignores both and
  is sent the same request as the B it is compared with: the cookie store's
  session cookie (the sealed tokens) for `+"`a`"+`, a memory-store session's
  cookie (the session ID, the same size as the Redis store's) for `+"`a-id`"+`.
  Caddy forwards every header, so the upstream parses them too.
- **Load.** wrk, closed loop, %[3]d threads, %[4]d keep-alive connections. In
  each of %[7]d rounds, every front end is loaded in turn for %[1]s (each
  round starting at the next one), after a %[2]s warm-up before its first
  round. The table gives the medians over the rounds; a ratio is the median
  of the per-round ratios, with their range. On this shared VM the speed of
  the machine drifts by more than the differences measured, so one run's
  ratios move by several hundredths; more rounds
  (`+"`make bench BENCH_ROUNDS=10`"+`) give firmer numbers.
%[10]s
- **Peak RSS** is VmHWM from `+"`/proc/PID/status`"+` after the last round;
  for C, Caddy's and oauth2-proxy's summed.
- **CPU/request** is the CPU time used during a round per request served
  (`+"`/proc/PID/stat`"+`, getrusage): "front end" counts Caddy (with
  oauth2-proxy for C, with redis-server for the Redis store), "all" adds wrk
  and the upstream (here %[9]s per request).

`, secs(cfg.load.duration), secs(cfg.warmup), cfg.load.threads, cfg.load.connections, placeholder, runtime.NumCPU(),
		cfg.rounds, rep.stealText(), rep.sharedCPU(), machineText(rep.stealText()))
	fmt.Fprintf(&b, "```\nmake bench\n# after the Go benchmarks, runs:\n%s\n# which, for each front end and round, runs:\n%s\n```\n\n", command(), rep.results[0].wrkCommand)
	b.WriteString(rep.table())
	b.WriteString("\n")
	b.WriteString(rep.ratios())
	b.WriteString("\nThe Caddyfiles of the run, wrk's raw output of every round and the\n" +
		"processes' logs are written to `bench/out/` (not committed).\n")
	return benchdoc.ReplaceSection(path, "Load comparison", beginMarker, endMarker, b.String())
}

// machineText says how the processes shared the CPUs.
func machineText(steal string) string {
	if split == nil {
		return fmt.Sprintf(`- **Machine.** wrk, Caddy, the upstream and the provider (for C also
  oauth2-proxy, for the Redis store redis-server) share the %d cores, so
  req/s is about cores / "all" (below), and the costs all front ends share
  dilute the ratios of req/s. CPU time stolen by the hypervisor during the
  measurements: %s.`, runtime.NumCPU(), steal)
	}
	return fmt.Sprintf(`- **Machine.** %d cores, split: the front end under test (Caddy, with
  oauth2-proxy for C, with redis-server for the Redis store) runs on CPU
  %s; wrk, the upstream and the provider run on CPU %s (`+"`taskset`"+`,
  `+"`sched_setaffinity`"+`). Sharing cores, the load generator's and the
  upstream's costs would be added to every front end's and dilute the
  differences (`+"`-split-cpus=false`"+` measures that way); apart, a front
  end's req/s is what its own CPU serves, about CPUs / "front end" (below).
  Go sizes GOMAXPROCS to the CPUs a process may use: %d for Caddy and
  oauth2-proxy. CPU time stolen by the hypervisor during the measurements:
  %s.`, runtime.NumCPU(), cpuList(split.front), cpuList(split.driver), len(split.front), steal)
}

func secs(d time.Duration) string { return fmt.Sprintf("%d s", int(d/time.Second)) }

func latency(d time.Duration) string {
	ms := float64(d) / 1e6
	switch {
	case ms < 10:
		return fmt.Sprintf("%.2f ms", ms)
	case ms < 100:
		return fmt.Sprintf("%.1f ms", ms)
	default:
		return fmt.Sprintf("%.0f ms", ms)
	}
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// rssText is Caddy's peak RSS, summed with oauth2-proxy's for C; the Redis
// store's redis-server is named beside it but not added.
func rssText(rss []namedRSS) string {
	if len(rss) == 0 {
		return ""
	}
	var sum int64
	var parts []string
	extra := ""
	for _, r := range rss {
		if r.name == "redis-server" {
			extra = fmt.Sprintf(" (+ redis-server %s)", mib(r.bytes))
			continue
		}
		sum += r.bytes
		parts = append(parts, r.name+" "+mib(r.bytes))
	}
	if len(parts) > 1 {
		return mib(sum) + " (" + strings.Join(parts, " + ") + ")"
	}
	return mib(sum) + extra
}
