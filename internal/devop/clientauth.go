package devop

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// Client authentication methods the client can be registered with.
const (
	ClientSecretBasic = string(oidc.AuthMethodBasic)
	ClientSecretPost  = string(oidc.AuthMethodPost)
	PrivateKeyJWT     = string(oidc.AuthMethodPrivateKeyJWT)
)

// tokenPath is where the zitadel provider serves its token endpoint.
var tokenPath = op.DefaultEndpoints.Token.Relative()

// maxTokenRequest bounds the token request bodies the method check reads.
const maxTokenRequest = 1 << 20

// clientAuth is the client's registered authentication: its method, its
// keys, and what the last token request used.
type clientAuth struct {
	method oidc.AuthMethod
	keys   map[string]crypto.PublicKey

	mu   sync.Mutex
	last string
}

func newClientAuth(method string, keys map[string]crypto.PublicKey) (*clientAuth, error) {
	switch method {
	case "":
		method = ClientSecretBasic
	case ClientSecretBasic, ClientSecretPost:
	case PrivateKeyJWT:
		if len(keys) == 0 {
			return nil, fmt.Errorf("client authentication %s needs a registered public key (ClientKeys)", method)
		}
	default:
		return nil, fmt.Errorf("client authentication %q: want %s, %s or %s", method, ClientSecretBasic, ClientSecretPost, PrivateKeyJWT)
	}
	a := &clientAuth{method: oidc.AuthMethod(method), keys: make(map[string]crypto.PublicKey, len(keys))}
	for kid, k := range keys {
		switch k.(type) {
		case *rsa.PublicKey, *ecdsa.PublicKey:
		default:
			return nil, fmt.Errorf("client key %q: %T is not an RSA or ECDSA public key", kid, k)
		}
		a.keys[kid] = k
	}
	return a, nil
}

// LastTokenAuthMethod returns the client authentication method the most
// recent token request used, whether or not it was accepted:
// client_secret_basic, client_secret_post, private_key_jwt, or none; "" if
// there was no token request yet.
func (s *Server) LastTokenAuthMethod() string {
	s.auth.mu.Lock()
	defer s.auth.mu.Unlock()
	return s.auth.last
}

// enforce refuses token requests that authenticate the client otherwise
// than registered. The zitadel provider keeps assertions and secrets
// apart, but takes a client secret in the header and in the form alike;
// tests of a relying party want to know which one it sent.
func (a *clientAuth) enforce(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != tokenPath {
			next.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, maxTokenRequest))
		r.Body.Close()
		if err != nil {
			http.Error(w, "reading the request", http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		form, _ := url.ParseQuery(string(body)) // a malformed form is the provider's to answer
		used := usedMethod(r, form)
		a.mu.Lock()
		a.last = used
		a.mu.Unlock()
		if used != string(a.method) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusUnauthorized)
			_ = json.NewEncoder(w).Encode(map[string]string{
				"error":             "invalid_client",
				"error_description": fmt.Sprintf("the client is registered for %s, not %s", a.method, used),
			})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// usedMethod tells how a token request authenticates the client.
func usedMethod(r *http.Request, form url.Values) string {
	_, _, basic := r.BasicAuth()
	switch {
	case basic:
		return ClientSecretBasic
	case form.Has("client_assertion"):
		return PrivateKeyJWT
	case form.Has("client_secret"):
		return ClientSecretPost
	}
	return string(oidc.AuthMethodNone)
}

// GetKeyByIDAndClientID implements op.Storage: the client's registered key
// that verifies its private_key_jwt assertions.
func (s *devStorage) GetKeyByIDAndClientID(ctx context.Context, keyID, clientID string) (*jose.JSONWebKey, error) {
	if clientID != s.client.GetID() {
		return s.Storage.GetKeyByIDAndClientID(ctx, keyID, clientID)
	}
	k, ok := s.auth.keys[keyID]
	if !ok {
		return nil, fmt.Errorf("client %s has no key %q", clientID, keyID)
	}
	return &jose.JSONWebKey{KeyID: keyID, Use: "sig", Key: k}, nil
}
