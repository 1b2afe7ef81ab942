// Command oidc-dev-provider runs a local OpenID Connect provider with one
// confidential client and one demo user, for trying oidc_auth on a developer
// machine. It keeps everything in memory and uses a fixed token encryption
// key: do not expose it to a network you do not control.
//
// Usage:
//
//	oidc-dev-provider [-addr localhost:9998] [-client-id caddy-demo] [-client-secret demo-secret]
//	                  [-client-auth client_secret_basic|client_secret_post|private_key_jwt]
//	                  [-client-public-key FILE [-client-key-id KID]]
//	                  [-access-token-type opaque|jwt]
//	                  [-redirect-uri URI]... [-post-logout-redirect-uri URI]...
//
// With -client-auth private_key_jwt, the client signs its assertions with
// the private key of -client-public-key (a PEM public key or certificate),
// and gives the provider's issuer as their audience
// (client_assertion_audience issuer).
//
// Redirect URIs may be globs ("http://localhost:*/oauth2/callback"); "*" does
// not match "/".
package main

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/oidcgate/caddy-oidc/internal/devop"
)

// uriList is a repeatable flag; the first use replaces the default.
type uriList struct {
	values []string
	set    bool
}

func (l *uriList) String() string { return strings.Join(l.values, " ") }

func (l *uriList) Set(v string) error {
	if !l.set {
		l.values, l.set = nil, true
	}
	l.values = append(l.values, v)
	return nil
}

func main() {
	redirects := &uriList{values: []string{"http://localhost:8080/oauth2/callback"}}
	postLogout := &uriList{values: []string{"http://localhost:8080/*"}}

	addr := flag.String("addr", "localhost:9998", "listen address")
	issuer := flag.String("issuer", "", "issuer URL without trailing slash (default: http:// + the listen address)")
	clientID := flag.String("client-id", devop.DefaultClientID, "client ID of the confidential web client")
	clientSecret := flag.String("client-secret", devop.DefaultClientSecret, "client secret of the web client")
	clientAuth := flag.String("client-auth", devop.ClientSecretBasic, "how the client authenticates at the token endpoint: client_secret_basic, client_secret_post or private_key_jwt")
	publicKey := flag.String("client-public-key", "", "PEM file with the client's public key or certificate, for private_key_jwt")
	keyID := flag.String("client-key-id", "", "the kid of the client's key (default: none)")
	tokenType := flag.String("access-token-type", devop.AccessTokenOpaque, "the client's access tokens: opaque (ask the introspection endpoint) or jwt")
	flag.Var(redirects, "redirect-uri", "allowed redirect URI or glob; repeatable")
	flag.Var(postLogout, "post-logout-redirect-uri", "allowed post-logout redirect URI or glob; repeatable")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "unexpected arguments: %s\n", strings.Join(flag.Args(), " "))
		flag.Usage()
		os.Exit(2)
	}

	var keys map[string]crypto.PublicKey
	if *publicKey != "" {
		k, err := readPublicKey(*publicKey)
		if err != nil {
			fmt.Fprintf(os.Stderr, "oidc-dev-provider: -client-public-key: %v\n", err)
			os.Exit(1)
		}
		keys = map[string]crypto.PublicKey{*keyID: k}
	}

	srv, err := devop.New(devop.Config{
		Addr:                   *addr,
		Issuer:                 *issuer,
		ClientID:               *clientID,
		ClientSecret:           *clientSecret,
		ClientAuthMethod:       *clientAuth,
		ClientKeys:             keys,
		RedirectURIs:           redirects.values,
		PostLogoutRedirectURIs: postLogout.values,
		AccessTokenType:        *tokenType,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "oidc-dev-provider: %v\n", err)
		os.Exit(1)
	}
	defer srv.Close()

	fmt.Printf(`OpenID Connect development provider (in-memory, not for production)

  issuer         %s
  client_id      %s
  client_secret  %s
  client_auth    %s
  access tokens  %s
  redirect URIs  %s
  after logout   %s

  sign in as     username %q  password %q

Press Ctrl+C to stop.
`, srv.Issuer(), *clientID, *clientSecret, *clientAuth, *tokenType,
		strings.Join(redirects.values, ", "), strings.Join(postLogout.values, ", "),
		devop.DemoUsername, devop.DemoPassword)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
}

// readPublicKey reads the first PEM public key or certificate of a file.
func readPublicKey(path string) (crypto.PublicKey, error) {
	rest, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("no PUBLIC KEY or CERTIFICATE in PEM")
		}
		switch block.Type {
		case "PUBLIC KEY":
			return x509.ParsePKIXPublicKey(block.Bytes)
		case "CERTIFICATE":
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, err
			}
			return c.PublicKey, nil
		}
	}
}
