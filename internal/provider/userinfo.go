package provider

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
)

// ErrNoUserinfo means the provider has no userinfo endpoint.
var ErrNoUserinfo = errors.New("the provider has no userinfo endpoint")

// UserinfoError is a userinfo response that must not be used: another
// subject's, a signature that does not verify, not JSON.
type UserinfoError struct {
	Reason string // a short, stable name: "subject", "signature", "malformed", "refused"
	msg    string
}

func (e *UserinfoError) Error() string { return e.msg }

func userinfoError(reason, format string, args ...any) error {
	return &UserinfoError{Reason: reason, msg: fmt.Sprintf(format, args...)}
}

// UserInfo asks the userinfo endpoint about the user the access token was
// issued for (OpenID Connect Core 5.3), with the token in the Authorization
// header (RFC 6750 2.1). The answer may be JSON or a JWT the provider
// signed (checked with the provider's keys). Its sub must be subject, the
// ID token's: otherwise it is another user's (5.3.2). It returns the claims
// as JSON.
func (s *State) UserInfo(ctx context.Context, accessToken, subject string) ([]byte, error) {
	if s.Metadata.UserinfoEndpoint == "" {
		return nil, ErrNoUserinfo
	}
	ctx, cancel := context.WithTimeout(ctx, RequestTimeout)
	defer cancel()
	body, contentType, err := s.get(ctx, s.Metadata.UserinfoEndpoint, accessToken)
	if err != nil {
		return nil, err
	}
	claims, err := s.readClaims(ctx, body, contentType)
	if err != nil {
		return nil, err
	}
	var c struct {
		Sub string `json:"sub"`
	}
	if err := json.Unmarshal(claims, &c); err != nil {
		return nil, userinfoError("malformed", "the userinfo answer is not a JSON object")
	}
	if c.Sub != subject {
		return nil, userinfoError("subject", "the userinfo answer is about another subject than the ID token")
	}
	return claims, nil
}

// get GETs url with the access token and returns the body and its media
// type.
func (s *State) get(ctx context.Context, url, accessToken string) ([]byte, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, "", err
	}
	req.Header.Set("Authorization", "Bearer "+accessToken)
	req.Header.Set("Accept", "application/json, application/jwt")
	resp, err := s.p.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocumentSize))
	if err != nil {
		return nil, "", fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	switch {
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return nil, "", fmt.Errorf("%w: %s answered %s", ErrUnavailable, endpointName(url, s), resp.Status)
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		// The WWW-Authenticate error, not the body, which is the
		// provider's.
		return nil, "", userinfoError("refused", "%s refused the access token (%s%s)", endpointName(url, s), resp.Status, bearerError(resp.Header))
	case resp.StatusCode != http.StatusOK:
		return nil, "", userinfoError("refused", "%s answered %s", endpointName(url, s), resp.Status)
	}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	return body, mt, nil
}

func endpointName(url string, s *State) string {
	if url == s.Metadata.UserinfoEndpoint {
		return "the userinfo endpoint"
	}
	return "the claims source"
}

// bearerError is the error code of a WWW-Authenticate: Bearer challenge.
func bearerError(h http.Header) string {
	v := h.Get("WWW-Authenticate")
	_, rest, ok := strings.Cut(v, `error="`)
	if !ok {
		return ""
	}
	code, _, _ := strings.Cut(rest, `"`)
	if len(code) > 40 {
		code = code[:40]
	}
	return ", " + code
}

// readClaims returns the claims of a userinfo or claims-source answer: JSON
// as it is, a JWT verified; compacted, for the claims end up in
// placeholders that header values take, and a provider's pretty-printing
// or final newline would make those invalid.
func (s *State) readClaims(ctx context.Context, body []byte, mediaType string) ([]byte, error) {
	if mediaType == "application/jwt" {
		payload, err := s.Verifier.SignedUserinfo(ctx, string(bytes.TrimSpace(body)))
		if err != nil {
			return nil, userinfoError("signature", "the signed userinfo answer was refused: %v", err)
		}
		body = payload
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, body); err != nil {
		if mediaType == "application/jwt" {
			return nil, userinfoError("malformed", "the signed userinfo answer's claims are not JSON")
		}
		return nil, userinfoError("malformed", "the userinfo answer is neither JSON nor a JWT")
	}
	return compact.Bytes(), nil
}
