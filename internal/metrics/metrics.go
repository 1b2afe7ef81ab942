// Package metrics holds the Prometheus collectors of oidc_auth and
// token_inject, named caddy_oidc_*. They are created once per process and
// registered in the metrics registry of every Caddy config that uses the
// modules, so they appear on Caddy's admin /metrics next to Caddy's own
// and their counts carry on across config reloads.
//
// No label holds a user identifier, a token, a URL or anything else that
// is not from a small fixed set or the configuration (provider names).
package metrics

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

const (
	namespace = "caddy"
	subsystem = "oidc"
)

func counter(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: subsystem, Name: name, Help: help,
	}, labels)
}

func histogram(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Subsystem: subsystem, Name: name, Help: help, Buckets: buckets,
	}, labels)
}

// Latency buckets, in seconds: session stores answer in microseconds to
// milliseconds, providers in milliseconds to seconds.
var (
	storeBuckets    = []float64{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1}
	providerBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}
)

// The collectors.
var (
	// SignInsStarted counts sign-ins sent to a provider.
	SignInsStarted = counter("sign_ins_started_total", "Sign-ins sent to the identity provider.", "provider")
	// SignInsCompleted counts sign-ins that established a session.
	SignInsCompleted = counter("sign_ins_completed_total", "Sign-ins that established a session.", "provider")
	// SignInsFailed counts callbacks that established no session, by
	// reason: state, issuer, provider_error, no_code, token_endpoint,
	// id_token, nonce, userinfo, provider_unavailable, session_store; and
	// rule_denied, a sign-in the provider completed for a user the allow
	// and deny rules refuse.
	SignInsFailed = counter("sign_ins_failed_total", "Sign-in callbacks that established no session, by reason.", "provider", "reason")
	// Refreshes counts token refreshes by result: ok, ended (the provider
	// refused the refresh token), failed (the provider could not be
	// reached or answered with an error).
	Refreshes = counter("refreshes_total", "Token refreshes at the identity provider, by result.", "provider", "result")
	// Logouts counts ended sessions by kind: user, backchannel,
	// frontchannel, expired.
	Logouts = counter("logouts_total", "Ended sessions, by kind.", "provider", "kind")
	// Substitutions counts access-token placeholders met by token_inject,
	// by where (header, query, body) and result (done, rejected,
	// cross_site).
	Substitutions = counter("substitutions_total", "Requests with the access-token placeholder, by where and result.", "where", "result")
	// BearerTokens counts requests authenticated by bearer token, by
	// result: accepted, refused, denied (by the rules), unavailable.
	BearerTokens = counter("bearer_tokens_total", "Requests with a bearer token, by result.", "result")
	// IntrospectionCache counts introspection cache lookups by result:
	// hit, miss.
	IntrospectionCache = counter("introspection_cache_total", "Introspection cache lookups, by result.", "result")
	// StoreDuration is the latency of session-store operations, by store
	// (memory, redis, storage) and operation.
	StoreDuration = histogram("session_store_duration_seconds", "Latency of session-store operations.", storeBuckets, "store", "operation")
	// StoreErrors counts failed session-store operations.
	StoreErrors = counter("session_store_errors_total", "Failed session-store operations.", "store", "operation")
	// RedisCache counts the Redis store's local cache: hit, miss,
	// invalidation.
	RedisCache = counter("redis_local_cache_total", "The Redis session store's local cache: hits, misses and invalidations.", "result")
	// ProviderDuration is the latency of requests to the identity
	// provider, by endpoint: discovery, keys, token, userinfo,
	// introspection, claims, other.
	ProviderDuration = histogram("provider_request_duration_seconds", "Latency of requests to the identity provider, by endpoint.", providerBuckets, "provider", "endpoint")
	// ProviderErrors counts requests to the provider that failed: no
	// answer, or a server error (5xx).
	ProviderErrors = counter("provider_request_errors_total", "Requests to the identity provider without an answer or with a server error, by endpoint.", "provider", "endpoint")
)

var all = []prometheus.Collector{
	SignInsStarted, SignInsCompleted, SignInsFailed, Refreshes, Logouts,
	Substitutions, BearerTokens, IntrospectionCache, StoreDuration,
	StoreErrors, RedisCache, ProviderDuration, ProviderErrors,
}

// Register registers the collectors in reg (a config's registry). Several
// modules of one config register them; the second time is not an error.
func Register(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	for _, c := range all {
		if err := reg.Register(c); err != nil {
			var already prometheus.AlreadyRegisteredError
			if errors.As(err, &already) && already.ExistingCollector == c {
				continue
			}
			return err
		}
	}
	return nil
}
