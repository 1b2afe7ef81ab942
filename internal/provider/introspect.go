package provider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/oidcgate/caddy-oidc/internal/claims"
)

// ErrNoIntrospection means the provider has no introspection endpoint.
var ErrNoIntrospection = errors.New("the provider has no introspection endpoint")

// Introspection is the provider's answer about a token (RFC 7662 2.2).
type Introspection struct {
	Active  bool
	Subject string
	// Expiry is the token's exp; zero if the provider did not say.
	Expiry time.Time
	// Claims are the answer's members; ClaimsJSON the answer.
	Claims     map[string]any
	ClaimsJSON []byte
}

// IntrospectionTimeout bounds a call to the introspection endpoint by
// default (Config.IntrospectionTimeout): an API request waits for it.
const IntrospectionTimeout = 5 * time.Second

// Introspect asks the provider's introspection endpoint about an access
// token (RFC 7662), authenticating as the client (IntrospectionAuth). A
// provider that cannot be asked, or does not answer with 200 and a JSON
// object in time, is ErrUnavailable; a token it does not know is an
// answer, inactive.
func (s *State) Introspect(ctx context.Context, token string) (*Introspection, error) {
	endpoint := s.Metadata.IntrospectionEndpoint
	if endpoint == "" {
		return nil, ErrNoIntrospection
	}
	ctx, cancel := context.WithTimeout(ctx, s.p.cfg.IntrospectionTimeout)
	defer cancel()
	form := url.Values{"token": {token}, "token_type_hint": {"access_token"}}
	header := http.Header{}
	if err := s.p.cfg.Auth.apply(s.IntrospectionAuth, s.p.cfg.ClientID, s.p.cfg.Issuer, endpoint, form, header, s.p.cfg.Now()); err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := s.p.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocumentSize))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if resp.StatusCode != http.StatusOK {
		// Whatever the status, the token could not be checked: a refused
		// client is a configuration matter, not the caller's.
		return nil, fmt.Errorf("%w: the introspection endpoint answered %s", ErrUnavailable, resp.Status)
	}
	m, err := claims.Decode(body)
	if err != nil {
		return nil, fmt.Errorf("%w: the introspection answer is not a JSON object", ErrUnavailable)
	}
	in := &Introspection{Claims: m, ClaimsJSON: body}
	in.Active, _ = m["active"].(bool)
	in.Subject, _ = m["sub"].(string)
	if exp, ok := m["exp"].(json.Number); ok {
		if sec, err := exp.Float64(); err == nil && sec > 0 && sec < 1<<40 {
			in.Expiry = time.Unix(int64(sec), 0)
		}
	}
	return in, nil
}
