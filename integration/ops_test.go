package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/oidcgate/caddy-oidc/internal/redistest"
	"github.com/oidcgate/caddy-oidc/internal/testop"
)

// opsSite is a Caddy with its admin endpoint on, whose /metrics the tests
// read as Prometheus would.
type opsSite struct {
	*site
	admin string // http://127.0.0.1:port
}

// startOpsSite loads a Caddyfile whose site blocks are sites (with %[1]s
// for the site's address and %[2]s for its log file) and whose admin
// endpoint is on; patch, if not nil, edits the adapted JSON first.
func startOpsSite(t *testing.T, sites string, patch func(cfg map[string]any)) *opsSite {
	t.Helper()
	dir := t.TempDir()
	s := &site{t: t, logFile: filepath.Join(dir, "caddy.log"), storage: filepath.Join(dir, "storage")}
	s.url = fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	admin := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	caddyfile := fmt.Sprintf(`{
	admin %s
	persist_config off
	storage file_system %s
	log {
		output file %s
		format json
		level DEBUG
	}
}
`, admin, s.storage, s.logFile) + fmt.Sprintf(sites, s.url, s.logFile)
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
	if err != nil {
		t.Fatalf("adapting Caddyfile: %v\n%s", err, caddyfile)
	}
	if patch != nil {
		var m map[string]any
		if err := json.Unmarshal(cfg, &m); err != nil {
			t.Fatal(err)
		}
		patch(m)
		if cfg, err = json.Marshal(m); err != nil {
			t.Fatal(err)
		}
	}
	s.config = cfg
	s.load()
	t.Cleanup(func() { _ = caddy.Stop() })
	return &opsSite{site: s, admin: "http://" + admin}
}

// series is one sample of the metrics page: its name and labels.
type series struct {
	name   string
	labels map[string]string
	value  float64
}

// metrics reads Caddy's admin /metrics.
func (o *opsSite) metrics() []series {
	o.t.Helper()
	resp, err := http.Get(o.admin + "/metrics")
	if err != nil {
		o.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		o.t.Fatalf("admin /metrics: %d", resp.StatusCode)
	}
	return parseMetrics(o.t, resp.Body)
}

// parseMetrics reads the Prometheus text format, enough of it for the
// samples Caddy writes: `name{a="x",b="y"} value`.
func parseMetrics(t *testing.T, r io.Reader) []series {
	t.Helper()
	var out []series
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		head := line[:sp]
		s := series{name: head, labels: map[string]string{}, value: v}
		if i := strings.IndexByte(head, '{'); i >= 0 {
			s.name = head[:i]
			for _, pair := range splitLabels(head[i+1 : len(head)-1]) {
				k, val, _ := strings.Cut(pair, "=")
				uq, err := strconv.Unquote(val)
				if err != nil {
					t.Fatalf("metrics line %q: label %q: %v", line, pair, err)
				}
				s.labels[k] = uq
			}
		}
		out = append(out, s)
	}
	return out
}

// splitLabels splits `a="x",b="y,z"` at the commas between labels.
func splitLabels(s string) []string {
	var out []string
	inQuote, start := false, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			inQuote = !inQuote
		case ',':
			if !inQuote {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

// key names a series as `name{a="x",b="y"}` with sorted labels.
func (s series) key() string {
	keys := make([]string, 0, len(s.labels))
	for k := range s.labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(s.name)
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%q", k, s.labels[k])
	}
	b.WriteByte('}')
	return b.String()
}

// sum adds up the samples named name whose labels include want's
// ("k=v" pairs).
func sum(ss []series, name string, want ...string) float64 {
	total := 0.0
next:
	for _, s := range ss {
		if s.name != name {
			continue
		}
		for _, kv := range want {
			k, v, _ := strings.Cut(kv, "=")
			if s.labels[k] != v {
				continue next
			}
		}
		total += s.value
	}
	return total
}

// countersOf returns the oidc counters that say what happened to users:
// sign-ins, refreshes, logouts, substitutions and bearer tokens.
func countersOf(ss []series) map[string]float64 {
	out := map[string]float64{}
	for _, s := range ss {
		for _, n := range []string{"sign_ins_started", "sign_ins_completed", "sign_ins_failed", "refreshes", "logouts", "substitutions", "bearer_tokens"} {
			if s.name == "caddy_oidc_"+n+"_total" {
				out[s.key()] = s.value
			}
		}
	}
	return out
}

// step runs do and checks that the user-facing counters changed by
// exactly want (keys as series.key prints them) and no others did.
func (o *opsSite) step(name string, do func(), want map[string]float64) {
	o.t.Helper()
	before := countersOf(o.metrics())
	do()
	after := countersOf(o.metrics())
	got := map[string]float64{}
	for k, v := range after {
		if d := v - before[k]; d != 0 {
			got[k] = d
		}
	}
	for k, v := range want {
		if got[k] != v {
			o.t.Errorf("%s: %s went up by %v, want %v", name, k, got[k], v)
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok {
			o.t.Errorf("%s: %s went up by %v, want no change", name, k, v)
		}
	}
}

func started(p string) string {
	return fmt.Sprintf(`caddy_oidc_sign_ins_started_total{provider=%q}`, p)
}
func completed(p string) string {
	return fmt.Sprintf(`caddy_oidc_sign_ins_completed_total{provider=%q}`, p)
}
func failed(p, reason string) string {
	return fmt.Sprintf(`caddy_oidc_sign_ins_failed_total{provider=%q,reason=%q}`, p, reason)
}
func refreshed(result string) string {
	return fmt.Sprintf(`caddy_oidc_refreshes_total{provider="default",result=%q}`, result)
}
func loggedOut(kind string) string {
	return fmt.Sprintf(`caddy_oidc_logouts_total{kind=%q,provider="default"}`, kind)
}
func substituted(where, result string) string {
	return fmt.Sprintf(`caddy_oidc_substitutions_total{result=%q,where=%q}`, result, where)
}

// opsSites is the Caddyfile of the operations tests: a public route with
// token_inject and nothing else, and the rest behind oidc_auth.
const opsSites = `%%[1]s {
	log {
		output file %%[2]s
		format json
	}
	route /public/* {
		token_inject
		reverse_proxy %[1]s
	}
	route {
		oidc_auth {
			issuer %[2]s
			client_id %[3]s
			client_secret %[4]s
			%[5]s
		}
		token_inject
		reverse_proxy %[1]s {
			header_up X-User-Email {http.auth.user.email}
		}
	}
}
`

// TestMetricsCountWhatHappened drives sign-ins, a failed sign-in of each
// kind, refreshes, logouts of each kind, substitutions and a Redis outage
// through a real Caddy, and reads the exact counts from its admin
// /metrics.
func TestMetricsCountWhatHappened(t *testing.T) {
	rs := redistest.Start(t)
	p := newProvider(t, testop.Config{AccessTokenTTL: 10 * time.Second})
	up := newUpstream(t)
	extra := fmt.Sprintf(`session_store redis {
				address %s
				local_cache_ttl off
			}
			deny {
				claim banned yes
			}`, rs.Addr())
	o := startOpsSite(t, fmt.Sprintf(opsSites, up.hostPort(), p.Issuer(), p.ClientID(), p.ClientSecret(), extra), nil)

	// Counted from the provider's side, to compare with what Caddy says it
	// asked.
	tokenCalls, userinfoCalls := p.TokenCalls(), p.UserinfoCalls()
	providerBefore := o.metrics()

	alice := newBrowser(t)
	o.step("a sign-in", func() { alice.signIn(o.site, "/") },
		map[string]float64{started("default"): 1, completed("default"): 1})

	o.step("a callback of no sign-in", func() {
		resp, _ := newBrowser(t).navigate(o.url + "/oauth2/callback?state=" + strings.Repeat("x", 43) + "&code=abc")
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("callback of no sign-in: %d", resp.StatusCode)
		}
	}, map[string]float64{failed("", "state"): 1})

	for _, c := range []struct {
		reason string
		set    func(on bool)
	}{
		{"provider_error", func(on bool) { p.SetMisbehavior(misbehaveIf(on, testop.AccessDenied)) }},
		{"nonce", func(on bool) { p.SetMisbehavior(misbehaveIf(on, testop.WrongNonce)) }},
		{"id_token", func(on bool) { p.SetMisbehavior(misbehaveIf(on, testop.BadSignature)) }},
		{"token_endpoint", func(on bool) { p.SetMisbehavior(misbehaveIf(on, testop.TokenEndpointError)) }},
		{"userinfo", func(on bool) {
			if on {
				p.SetUserinfoMisbehavior(testop.UserinfoOtherSubject)
			} else {
				p.SetUserinfoMisbehavior(testop.UserinfoBehaves)
			}
		}},
		{"rule_denied", func(on bool) {
			claims := map[string]any{}
			if on {
				claims["banned"] = "yes"
			}
			if err := p.SetClaims(claims); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		c.set(true)
		o.step("a sign-in failing with "+c.reason, func() {
			if resp, _ := newBrowser(t).navigate(o.url + "/"); resp.StatusCode < 400 {
				t.Errorf("sign-in failing with %s: %d", c.reason, resp.StatusCode)
			}
		}, map[string]float64{started("default"): 1, failed("default", c.reason): 1})
		c.set(false)
	}

	// Alice's token expires within token_inject's refresh skew: her first
	// call with the placeholder refreshes it, for an hour.
	p.SetAccessTokenTTL(time.Hour)
	o.step("a call that refreshes", func() {
		if resp := apiCall(t, alice, o.url); resp.StatusCode != http.StatusOK {
			t.Errorf("call with a refresh: %d", resp.StatusCode)
		}
	}, map[string]float64{refreshed("ok"): 1, substituted("header", "done"): 1})
	o.step("a call with a fresh token", func() { apiCall(t, alice, o.url) },
		map[string]float64{substituted("header", "done"): 1})
	o.step("a call from another site", func() {
		req, _ := http.NewRequest(http.MethodGet, o.url+"/api", nil)
		req.Header.Set("Authorization", "Bearer "+placeholder)
		req.Header.Set("Sec-Fetch-Site", "cross-site")
		alice.do(req)
	}, map[string]float64{substituted("header", "cross_site"): 1})
	o.step("a call without a session", func() {
		req, _ := http.NewRequest(http.MethodGet, o.url+"/public/api?t="+url.QueryEscape(placeholder), nil)
		req.Header.Set("Authorization", "Bearer "+placeholder)
		newBrowser(t).do(req)
	}, map[string]float64{substituted("header", "rejected"): 1})

	// Bob's refresh token is revoked: his session ends. Carol's refresh
	// finds the provider down.
	p.SetAccessTokenTTL(10 * time.Second)
	bob, carol := newBrowser(t), newBrowser(t)
	bob.signIn(o.site, "/")
	carol.signIn(o.site, "/")
	p.SetAccessTokenTTL(time.Hour)
	p.RevokeRefreshTokens()
	o.step("a refresh the provider refuses", func() {
		if resp := apiCall(t, bob, o.url); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("call after the refresh token was revoked: %d", resp.StatusCode)
		}
	}, map[string]float64{refreshed("ended"): 1})
	p.SetDown(true)
	o.step("a refresh while the provider is down", func() {
		if resp := apiCall(t, carol, o.url); resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("call while the provider is down: %d", resp.StatusCode)
		}
	}, map[string]float64{refreshed("failed"): 1})
	p.SetDown(false)

	o.step("a sign-out", func() { alice.signOut(o.site, "") },
		map[string]float64{loggedOut("user"): 1})

	dave := newBrowser(t)
	dave.signIn(o.site, "/")
	o.step("a back-channel logout", func() { sendLogoutToken(t, p, o.url, "", sidOf(t, p), http.StatusOK) },
		map[string]float64{loggedOut("backchannel"): 1})
	erin := newBrowser(t)
	erin.signIn(o.site, "/")
	o.step("a front-channel logout", func() {
		resp, _ := newBrowser(t).navigate(o.url + "/oauth2/frontchannel-logout?iss=" + url.QueryEscape(p.Issuer()) + "&sid=" + url.QueryEscape(sidOf(t, p)))
		if resp.StatusCode != http.StatusOK {
			t.Errorf("front-channel logout: %d", resp.StatusCode)
		}
	}, map[string]float64{loggedOut("frontchannel"): 1})

	// What Caddy measured of its requests to the provider is what the
	// provider saw.
	providerAfter := o.metrics()
	for endpoint, want := range map[string]int{"token": p.TokenCalls() - tokenCalls, "userinfo": p.UserinfoCalls() - userinfoCalls} {
		name := "caddy_oidc_provider_request_duration_seconds_count"
		got := sum(providerAfter, name, "endpoint="+endpoint, "provider=default") - sum(providerBefore, name, "endpoint="+endpoint, "provider=default")
		if int(got) != want {
			t.Errorf("provider requests to %s: Caddy counted %v, the provider saw %d", endpoint, got, want)
		}
	}
	// The provider's 500s at the token endpoint are its errors.
	if got := sum(providerAfter, "caddy_oidc_provider_request_errors_total", "endpoint=token") - sum(providerBefore, "caddy_oidc_provider_request_errors_total", "endpoint=token"); got < 1 {
		t.Errorf("provider errors at the token endpoint: %v, want at least the 500 and the 503", got)
	}

	// Redis goes away: a request's session read fails, and is counted.
	erin2 := newBrowser(t)
	erin2.signIn(o.site, "/")
	gets := func(ss []series) (n, errs float64) {
		return sum(ss, "caddy_oidc_session_store_duration_seconds_count", "store=redis", "operation=get"),
			sum(ss, "caddy_oidc_session_store_errors_total", "store=redis", "operation=get")
	}
	n0, e0 := gets(o.metrics())
	erin2.fetch(o.url + "/api")
	n1, e1 := gets(o.metrics())
	if n1-n0 != 1 || e1 != e0 {
		t.Errorf("a request with Redis up: %v reads, %v errors; want 1 and 0", n1-n0, e1-e0)
	}
	rs.Stop()
	if resp, _ := erin2.fetch(o.url + "/api"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("a request with Redis down: %d, want 503", resp.StatusCode)
	}
	n2, e2 := gets(o.metrics())
	if n2-n1 != 1 || e2-e1 != 1 {
		t.Errorf("a request with Redis down: %v reads, %v errors; want 1 and 1", n2-n1, e2-e1)
	}
	rs.Restart()

	// No label carries a user, a session or a token.
	for _, s := range o.metrics() {
		if !strings.HasPrefix(s.name, "caddy_oidc_") {
			continue
		}
		for k, v := range s.labels {
			if strings.Contains(v, "user-1") || strings.Contains(v, "@") || len(v) > 32 {
				t.Errorf("%s: label %s=%q", s.name, k, v)
			}
		}
	}
	assertNoSecrets(t, "the metrics page", metricsText(t, o), accessTokens(p)...)
}

func misbehaveIf(on bool, m testop.Misbehavior) testop.Misbehavior {
	if on {
		return m
	}
	return testop.MisbehaveNone
}

func metricsText(t *testing.T, o *opsSite) string {
	resp, err := http.Get(o.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// recordedEvent is an event as a subscribing handler saw it.
type recordedEvent struct {
	name string
	data map[string]any
}

// eventRecorder is an event handler module that keeps what it is given.
type eventRecorder struct{}

var (
	recordedMu sync.Mutex
	recorded   []recordedEvent
)

func init() { caddy.RegisterModule(eventRecorder{}) }

func (eventRecorder) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "events.handlers.oidc_test_recorder", New: func() caddy.Module { return new(eventRecorder) }}
}

func (eventRecorder) Handle(_ context.Context, e caddy.Event) error {
	recordedMu.Lock()
	defer recordedMu.Unlock()
	data := map[string]any{}
	for k, v := range e.Data {
		data[k] = v
	}
	recorded = append(recorded, recordedEvent{e.Name(), data})
	return nil
}

func takeEvents() []recordedEvent {
	recordedMu.Lock()
	defer recordedMu.Unlock()
	out := recorded
	recorded = nil
	return out
}

// subscribe adds to an adapted config an events app whose subscription
// hands the oidc events to the recorder.
func subscribe(cfg map[string]any) {
	apps, _ := cfg["apps"].(map[string]any)
	apps["events"] = map[string]any{
		"subscriptions": []any{map[string]any{
			"events":   []any{"oidc_signed_in", "oidc_signed_out", "oidc_session_revoked", "oidc_refresh_failed", "oidc_access_denied"},
			"handlers": []any{map[string]any{"handler": "oidc_test_recorder"}},
		}},
	}
}

// TestEventsReachSubscribers: a handler subscribed through Caddy's events
// app is told of sign-ins, sign-outs, revocations, failed refreshes and
// refused users, with sub, sid, provider and reason, never a token.
func TestEventsReachSubscribers(t *testing.T) {
	p := newProvider(t, testop.Config{AccessTokenTTL: 10 * time.Second})
	up := newUpstream(t)
	extra := `deny {
				claim banned yes
			}`
	o := startOpsSite(t, fmt.Sprintf(opsSites, up.hostPort(), p.Issuer(), p.ClientID(), p.ClientSecret(), extra), subscribe)
	takeEvents()

	alice := newBrowser(t)
	alice.signIn(o.site, "/")
	aliceSID := sidOf(t, p)
	alice.signOut(o.site, "")

	bob := newBrowser(t)
	bob.signIn(o.site, "/")
	bobSID := sidOf(t, p)
	sendLogoutToken(t, p, o.url, "", bobSID, http.StatusOK)

	carol := newBrowser(t)
	carol.signIn(o.site, "/")
	p.RevokeRefreshTokens()
	apiCall(t, carol, o.url)

	if err := p.SetClaims(map[string]any{"banned": "yes"}); err != nil {
		t.Fatal(err)
	}
	newBrowser(t).navigate(o.url + "/")

	var names []string
	events := takeEvents()
	for _, e := range events {
		names = append(names, e.name)
	}
	want := []string{"oidc_signed_in", "oidc_signed_out", "oidc_signed_in", "oidc_session_revoked", "oidc_signed_in", "oidc_refresh_failed", "oidc_access_denied", "oidc_access_denied"}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Fatalf("events %v, want %v", names, want)
	}
	check := func(i int, fields map[string]any) {
		t.Helper()
		for k, v := range fields {
			if events[i].data[k] != v {
				t.Errorf("event %d (%s): %s = %v, want %v (data %v)", i, events[i].name, k, events[i].data[k], v, events[i].data)
			}
		}
	}
	check(0, map[string]any{"sub": "user-1", "sid": aliceSID, "provider": "default"})
	check(1, map[string]any{"sub": "user-1", "sid": aliceSID, "reason": "user"})
	check(3, map[string]any{"sid": bobSID, "reason": "backchannel"})
	check(5, map[string]any{"sub": "user-1", "reason": "ended"})
	check(6, map[string]any{"sub": "user-1", "reason": "deny rule 1"})
	text, _ := json.Marshal(fmt.Sprint(events))
	assertNoSecrets(t, "the events", string(text), p.IssuedTokens()...)
}

// health reads the health endpoint.
func health(t *testing.T, base string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get(base + "/oauth2/health")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("health: Cache-Control %q, want no-store", resp.Header.Get("Cache-Control"))
	}
	return resp.StatusCode, jsonBody(t, string(b))
}

// waitHealth polls the health endpoint until it answers want, for at most
// five seconds (its answers are cached for a second).
func waitHealth(t *testing.T, base string, want int) map[string]any {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, body := health(t, base)
		if got == want {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("health %d %v, want %d", got, body, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestHealthFollowsRedisAndTheProvider: the health endpoint answers 200
// while the provider and Redis answer, 503 while either does not, and 200
// again when they are back; without health_details it names no address
// or error.
func TestHealthFollowsRedisAndTheProvider(t *testing.T) {
	rs := redistest.Start(t)
	p := newProvider(t, testop.Config{})
	up := newUpstream(t)
	extra := fmt.Sprintf(`session_store redis {
				address %s
			}`, rs.Addr())
	o := startOpsSite(t, fmt.Sprintf(opsSites, up.hostPort(), p.Issuer(), p.ClientID(), p.ClientSecret(), extra), nil)

	body := waitHealth(t, o.url, http.StatusOK)
	if body["status"] != "ok" {
		t.Errorf("healthy: %v", body)
	}
	rs.Stop()
	body = waitHealth(t, o.url, http.StatusServiceUnavailable)
	store, _ := body["session_store"].(map[string]any)
	if store["status"] != "unavailable" {
		t.Errorf("Redis down: %v", body)
	}
	text, _ := json.Marshal(body)
	if strings.Contains(string(text), rs.Addr()) || strings.Contains(string(text), "127.0.0.1") {
		t.Errorf("the public health report names an address: %s", text)
	}
	rs.Restart()
	waitHealth(t, o.url, http.StatusOK)

	p.SetDown(true)
	body = waitHealth(t, o.url, http.StatusServiceUnavailable)
	providers, _ := body["providers"].(map[string]any)
	if def, _ := providers["default"].(map[string]any); def["status"] != "unavailable" {
		t.Errorf("provider down: %v", body)
	}
	text, _ = json.Marshal(body)
	if strings.Contains(string(text), "127.0.0.1") || strings.Contains(string(text), "503") {
		t.Errorf("the public health report names an address or an error: %s", text)
	}
	p.SetDown(false)
	waitHealth(t, o.url, http.StatusOK)
}
