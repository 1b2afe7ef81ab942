package oidcauth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/oidcgate/caddy-oidc/internal/provider"
)

func ecKeyPEM(t *testing.T) (string, *ecdsa.PrivateKey) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})), k
}

func TestClientAuthReadsKeyFromEnvAndFile(t *testing.T) {
	keyPEM, key := ecKeyPEM(t)
	t.Setenv("CADDY_OIDC_TEST_CLIENT_KEY", keyPEM)
	file := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(file, []byte(keyPEM), 0o600); err != nil {
		t.Fatal(err)
	}
	repl := caddy.NewReplacer()
	for name, h := range map[string]*ProviderConfig{
		"client_key {env.*}":       {ClientKey: "{env.CADDY_OIDC_TEST_CLIENT_KEY}", ClientKeyID: "k1"},
		"client_key {file.*}":      {ClientKey: "{file." + file + "}", ClientKeyID: "k1"},
		"client_key_file":          {ClientKeyFile: file, ClientKeyID: "k1"},
		"client_key_file with env": {ClientKeyFile: "{env.CADDY_OIDC_TEST_KEY_DIR}/key.pem", ClientKeyID: "k1"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Setenv("CADDY_OIDC_TEST_KEY_DIR", filepath.Dir(file))
			auth, err := clientAuthOf(*h, repl, "")
			if err != nil {
				t.Fatal(err)
			}
			if !key.PublicKey.Equal(auth.Key.Public()) || auth.KeyID != "k1" || auth.Certificate != nil {
				t.Errorf("auth = %+v", auth)
			}
		})
	}
}

func TestClientAuthRefusesWhatItCannotUse(t *testing.T) {
	keyPEM, _ := ecKeyPEM(t)
	repl := caddy.NewReplacer()
	for _, c := range []struct {
		h      ProviderConfig
		secret string
		want   string
	}{
		{ProviderConfig{ClientKey: keyPEM, ClientKeyFile: "/x.pem"}, "", "give one"},
		{ProviderConfig{ClientKeyFile: "/nonexistent/key.pem"}, "", "client_key_file"},
		{ProviderConfig{ClientKey: "not a key"}, "", "no PEM private key"},
		{ProviderConfig{ClientKey: "{env.CADDY_OIDC_TEST_UNSET_KEY}"}, "", "client_key: evaluated placeholder {env.CADDY_OIDC_TEST_UNSET_KEY} is empty"},
		{ProviderConfig{ClientAuth: provider.PrivateKeyJWT}, "secret", "needs a private key"},
		{ProviderConfig{ClientAuth: provider.ClientSecretJWT}, "short", "at least 32 bytes"},
		{ProviderConfig{ClientAuth: provider.ClientSecretPost}, "", "needs a client secret"},
	} {
		_, err := clientAuthOf(c.h, repl, c.secret)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v, want an error saying %q", err, c.want)
		}
	}
}

func TestValidateClientAssertionAudience(t *testing.T) {
	for aud, ok := range map[string]bool{
		"":                                  true,
		"issuer":                            true,
		"https://login.example/oauth/token": true,
		"token_endpoint":                    false,
		"/token":                            false,
	} {
		h := Handler{ProviderConfig: ProviderConfig{Issuer: "http://127.0.0.1:1", ClientID: "c", ClientAssertionAudience: aud}, SessionKeys: []string{testKey()}}
		h.storage = &certmagic.FileStorage{Path: t.TempDir()}
		ctx, cancel := caddy.NewContext(caddy.Context{Context: t.Context()})
		err := h.provision(ctx, zap.NewNop())
		if err == nil {
			err = h.Validate()
		}
		cancel()
		if ok != (err == nil) {
			t.Errorf("client_assertion_audience %q: %v", aud, err)
		}
	}
}
