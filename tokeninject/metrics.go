package tokeninject

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/oidcgate/caddy-oidc/internal/metrics"
)

// Results of a request with the access-token placeholder, the result
// label of caddy_oidc_substitutions_total.
const (
	// substituted: the placeholder was replaced with the token.
	substituted = iota
	// withheld: the request is not the site's own (or names no origin and
	// allow_unknown_origin is off); on_missing decides what happens to it.
	withheld
	// missing: no access token (not signed in, or the session has none);
	// on_missing decides what happens to it.
	missing
)

var resultNames = [...]string{substituted: "done", withheld: "cross_site", missing: "rejected"}

// substitutionCounters are caddy_oidc_substitutions_total's counters by
// where (header, query, body) and result, looked up once: they are
// counted on every request that carries the placeholder.
var substitutionCounters = func() (c [3][len(resultNames)]prometheus.Counter) {
	for i, where := range [...]string{"header", "query", "body"} {
		for j, result := range resultNames {
			c[i][j] = metrics.Substitutions.WithLabelValues(where, result)
		}
	}
	return c
}()

// countSubstitution counts a request whose placeholders were in the
// places n names, by result.
func countSubstitution(n needs, result int) {
	if n.header {
		substitutionCounters[0][result].Inc()
	}
	if n.query {
		substitutionCounters[1][result].Inc()
	}
	if n.body {
		substitutionCounters[2][result].Inc()
	}
}
