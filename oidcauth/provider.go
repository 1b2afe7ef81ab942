package oidcauth

import (
	"fmt"
	"os"
	"strings"

	"github.com/caddyserver/caddy/v2"

	"github.com/oidcgate/caddy-oidc/internal/provider"
)

// providerRequestTimeout bounds every request to the provider.
const providerRequestTimeout = provider.RequestTimeout

// errProviderUnavailable is wrapped by every error that means "the identity
// provider could not be reached or discovered (yet)": requests that need it
// get 503.
var errProviderUnavailable = provider.ErrUnavailable

// clientAuth reads the client's credentials: the secret and, for
// private_key_jwt, the key, resolving placeholders such as {env.*} and
// {file.*}. They go into the provider's configuration only, never back
// into the handler's, so the admin API does not echo them.
func clientAuthOf(cfg ProviderConfig, repl *caddy.Replacer, secret string) (provider.ClientAuth, error) {
	auth := provider.ClientAuth{Method: cfg.ClientAuth, Secret: secret, KeyID: cfg.ClientKeyID, AssertionAudience: cfg.ClientAssertionAudience}
	var pemText []byte
	switch {
	case cfg.ClientKey != "" && cfg.ClientKeyFile != "":
		return auth, fmt.Errorf("client_key and client_key_file: give one")
	case cfg.ClientKey != "":
		v, err := repl.ReplaceOrErr(cfg.ClientKey, true, true)
		if err != nil {
			return auth, fmt.Errorf("client_key: %v", err)
		}
		pemText = []byte(strings.TrimSpace(v))
	case cfg.ClientKeyFile != "":
		path, err := repl.ReplaceOrErr(cfg.ClientKeyFile, true, true)
		if err != nil {
			return auth, fmt.Errorf("client_key_file: %v", err)
		}
		if pemText, err = os.ReadFile(path); err != nil {
			return auth, fmt.Errorf("client_key_file: %v", err)
		}
	}
	if pemText != nil {
		key, cert, err := provider.ParseKey(pemText)
		if err != nil {
			return auth, fmt.Errorf("client key: %v", err)
		}
		auth.Key, auth.Certificate = key, cert
	}
	if err := auth.Validate(); err != nil {
		return auth, fmt.Errorf("client_auth: %v", err)
	}
	return auth, nil
}
