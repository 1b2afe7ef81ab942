package oidcauth

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"go.uber.org/zap"
	"golang.org/x/oauth2"
)

// maxClockSkew is how far in the future an ID token's iat may lie.
const maxClockSkew = 5 * time.Minute

// serveCallback completes a sign-in: it matches the callback to the login
// attempt that started it, redeems the code with the PKCE verifier, verifies
// the ID token and establishes the session.
func (h *Handler) serveCallback(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	state := q.Get("state")

	// Find and consume the login attempt this callback belongs to. The
	// cookie is deleted whatever happens next, so a callback URL cannot be
	// replayed.
	var ls loginState
	var found bool
	if len(state) >= loginIDLength {
		name := h.loginCookieName(r, state)
		if value, ok := requestCookie(r, name); ok {
			h.loginCookies.expire(w, r, name)
			ls, found = h.openLoginState(value)
			found = found && subtle.ConstantTimeCompare([]byte(ls.State), []byte(state)) == 1
		}
	}

	if !found {
		// An error from the provider is shown only for a sign-in this
		// browser started: anyone can make a link to the callback, and its
		// text would appear on the site's own origin.
		h.logger.Info("callback with unknown, expired or replayed state", zap.Bool("error", q.Has("error")))
		return h.errorPage(w, r, http.StatusBadRequest, "Sign-in could not be completed",
			"This sign-in link is unknown, expired or was already used.", true)
	}
	if e := q.Get("error"); e != "" {
		desc := q.Get("error_description")
		h.logger.Info("provider refused sign-in", zap.String("error", truncate(e, 100)), zap.String("error_description", truncate(desc, 300)))
		return h.errorPage(w, r, http.StatusForbidden, "Sign-in was refused",
			"The identity provider did not sign you in: "+truncate(e, 100)+describe(desc), true)
	}
	code := q.Get("code")
	if code == "" {
		return h.errorPage(w, r, http.StatusBadRequest, "Sign-in could not be completed",
			"The identity provider's answer has no authorization code.", true)
	}

	st, err := h.provider.get(r.Context())
	if err != nil {
		return h.providerUnavailable(w, r, err)
	}
	cfg := st.oauth2
	cfg.RedirectURL = h.redirectURI(r)
	ctx, cancel := context.WithTimeout(h.provider.ctx(r.Context()), providerRequestTimeout)
	defer cancel()
	tok, err := cfg.Exchange(ctx, code, oauth2.VerifierOption(ls.Verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			// Only the error code and description: the raw response body
			// is the provider's and is not logged.
			h.logger.Warn("token exchange refused", zap.String("error", re.ErrorCode), zap.String("error_description", re.ErrorDescription), zap.Int("status", statusOf(re)))
			return h.errorPage(w, r, http.StatusBadGateway, "Sign-in could not be completed",
				"The identity provider refused to issue tokens: "+truncate(re.ErrorCode, 100)+describe(re.ErrorDescription), true)
		}
		h.logger.Warn("token exchange failed", zap.Error(err))
		return h.providerUnavailable(w, r, err)
	}

	idt, raw, err := h.verifyIDToken(ctx, st, tok, ls.Nonce)
	if err != nil {
		h.logger.Warn("ID token rejected", zap.String("reason", err.Error()))
		return h.errorPage(w, r, http.StatusUnauthorized, "Sign-in could not be completed",
			"The identity provider's ID token failed verification: "+err.Error(), true)
	}

	var extra struct {
		SID string `json:"sid"`
	}
	_ = idt.Claims(&extra)
	now := h.now()
	s := &Session{
		signInID:     randomString(16),
		subject:      idt.Subject,
		sid:          extra.SID,
		rawIDToken:   raw,
		accessToken:  tok.AccessToken,
		refreshToken: tok.RefreshToken,
		tokenExpiry:  tok.Expiry,
		createdAt:    now,
		lastSeen:     now,
		owner:        h,
	}
	if err := s.deriveClaims(); err != nil {
		return h.errorPage(w, r, http.StatusUnauthorized, "Sign-in could not be completed", err.Error(), true)
	}
	if err := h.store.Save(w, r, s); err != nil {
		h.logger.Error("saving session", zap.Error(err))
		return h.errorPage(w, r, http.StatusServiceUnavailable, "Sign-in could not be completed",
			"The session could not be saved.", true)
	}
	h.logger.Info("signed in", zap.String("sub", s.subject))
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, safeRedirect(ls.Redirect), http.StatusSeeOther)
	return nil
}

// verifyIDToken checks the ID token of a token response per OpenID Connect
// Core 3.1.3.7: signature with an allowed algorithm and a key of the
// provider's (go-oidc), iss, aud and exp (go-oidc), and here the rest: a kid
// when the signature needs one, azp, iat not in the future, nonce (binds the
// token to this browser's login attempt, against injected tokens) and at_hash
// when present (binds the access token to the ID token).
func (h *Handler) verifyIDToken(ctx context.Context, st *providerState, tok *oauth2.Token, nonce string) (*oidc.IDToken, string, error) {
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return nil, "", errors.New("the token response has no id_token")
	}
	if err := requireKeyID(raw); err != nil {
		return nil, "", err
	}
	idt, err := st.verifier.Verify(ctx, raw)
	if err != nil {
		return nil, "", strip(err)
	}
	var claims struct {
		AZP string `json:"azp"`
	}
	if err := idt.Claims(&claims); err != nil {
		return nil, "", fmt.Errorf("decoding claims: %v", err)
	}
	if len(idt.Audience) > 1 && claims.AZP == "" {
		return nil, "", errors.New("token has several audiences but no azp claim")
	}
	if claims.AZP != "" && claims.AZP != h.provider.clientID {
		return nil, "", fmt.Errorf("azp %q is not this client", truncate(claims.AZP, 100))
	}
	if idt.IssuedAt.IsZero() {
		return nil, "", errors.New("token has no iat claim")
	}
	if idt.IssuedAt.After(h.now().Add(maxClockSkew)) {
		return nil, "", fmt.Errorf("token issued in the future (iat %s)", idt.IssuedAt.UTC().Format(time.RFC3339))
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(nonce)) != 1 {
		return nil, "", errors.New("nonce does not match this sign-in")
	}
	if idt.AccessTokenHash != "" {
		if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
			return nil, "", errors.New("at_hash does not match the access token")
		}
	}
	if idt.Subject == "" {
		return nil, "", errors.New("token has no sub claim")
	}
	return idt, raw, nil
}

// requireKeyID refuses an ID token without a kid header. Every major
// provider sends one; without it the verifier would try each published key,
// which OpenID Connect Core 10.1 forbids when more than one is published.
func requireKeyID(raw string) error {
	head, _, ok := strings.Cut(raw, ".")
	if !ok {
		return errors.New("token is not a compact JWT")
	}
	b, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		return errors.New("token header is not base64url")
	}
	var hdr struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(b, &hdr); err != nil {
		return errors.New("token header is not JSON")
	}
	if hdr.Alg == "none" || hdr.Alg == "" {
		return errors.New(`token is unsigned (alg "none")`)
	}
	if hdr.Kid == "" && !strings.HasPrefix(hdr.Alg, "HS") {
		return errors.New("token header has no kid")
	}
	return nil
}

// strip makes go-oidc's errors readable on an error page.
func strip(err error) error {
	return errors.New(strings.TrimPrefix(err.Error(), "oidc: "))
}

func statusOf(re *oauth2.RetrieveError) int {
	if re.Response != nil {
		return re.Response.StatusCode
	}
	return 0
}

func describe(desc string) string {
	if desc == "" {
		return "."
	}
	return " (" + truncate(desc, 300) + ")."
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
