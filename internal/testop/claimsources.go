package testop

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"strings"
)

// ClaimSource is a source of aggregated or distributed claims (OpenID
// Connect Core 5.6.2), which the provider refers to from the ID token
// and/or the userinfo answer: _claim_names maps each of its claims to it,
// _claim_sources describes it.
type ClaimSource struct {
	// Name names the source in _claim_sources. Required.
	Name string
	// Claims are the claims the source holds.
	Claims map[string]any
	// Distributed makes it a distributed source: an endpoint the provider
	// serves at /claims/<Name>, which answers a Bearer request with the
	// claims. Otherwise it is aggregated: a JWT of the claims, signed by
	// the provider with the current key, in _claim_sources itself.
	Distributed bool
	// AnswerJSON makes a distributed source answer JSON rather than a JWT
	// (application/jwt).
	AnswerJSON bool
	// OwnToken gives a distributed source an access_token of its own in
	// _claim_sources, the only one its endpoint accepts; otherwise it
	// accepts the user's access token, as OpenID Connect Core 5.6.2 says a
	// client should send when the source names none.
	OwnToken bool
	// InIDToken and InUserinfo say where the source is referred to.
	InIDToken, InUserinfo bool
	// BadSignature corrupts the signature of the source's JWT.
	BadSignature bool
}

// Where a claim source is referred to.
type placement int

const (
	inIDToken placement = iota
	inUserinfo
)

type placedClaim struct {
	where placement
	name  string
}

func (s ClaimSource) in(where placement) bool {
	if where == inIDToken {
		return s.InIDToken
	}
	return s.InUserinfo
}

// SetClaimSources replaces the claim sources; none removes them all. It
// affects ID tokens and userinfo answers from now on.
func (p *Provider) SetClaimSources(sources ...ClaimSource) error {
	names := map[string]bool{}
	claimOf := map[placedClaim]string{} // _claim_names must name one source per claim
	out := make([]ClaimSource, 0, len(sources))
	tokens := map[string]string{}
	for _, s := range sources {
		if s.Name == "" || strings.Contains(s.Name, "/") || names[s.Name] {
			return fmt.Errorf("testop: claim source name %q is empty, not one path segment, or used twice", s.Name)
		}
		names[s.Name] = true
		c, err := copyClaims(s.Claims)
		if err != nil {
			return fmt.Errorf("testop: claim source %s: %w", s.Name, err)
		}
		for name := range c {
			for _, where := range []placement{inIDToken, inUserinfo} {
				if !s.in(where) {
					continue
				}
				key := placedClaim{where, name}
				if other, dup := claimOf[key]; dup {
					return fmt.Errorf("testop: claim %q is in sources %s and %s", name, other, s.Name)
				}
				claimOf[key] = s.Name
			}
		}
		s.Claims = c
		if s.Distributed && s.OwnToken {
			tokens[s.Name] = randomString(43)
		}
		out = append(out, s)
	}
	p.mu.Lock()
	p.x.sources = out
	p.x.sourceToken = tokens
	for _, tok := range tokens {
		p.issued = append(p.issued, tok)
	}
	p.mu.Unlock()
	return nil
}

// ClaimSourceCalls returns the number of requests to the endpoint of the
// distributed source name, whatever their answer (but 503 while down).
func (p *Provider) ClaimSourceCalls(name string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.x.sourceCalls[name]
}

// addIDTokenExtras gives the claims of an ID token of grant g its tenant
// and its references to claim sources.
func (p *Provider) addIDTokenExtras(c map[string]any, g grant, accessToken string) error {
	tenant := p.grantTenant(g.sid, accessToken)
	p.setTenant(c, tenant)
	return p.addClaimSources(c, inIDToken, g.subject, tenant)
}

// addClaimSources adds _claim_names and _claim_sources for the sources
// placed where to the claims c of subject; aggregated sources' JWTs are
// signed now.
func (p *Provider) addClaimSources(c map[string]any, where placement, subject, tenant string) error {
	p.mu.Lock()
	var sources []ClaimSource
	for _, s := range p.x.sources {
		if s.in(where) {
			sources = append(sources, s)
		}
	}
	tokens := maps.Clone(p.x.sourceToken)
	p.mu.Unlock()
	if len(sources) == 0 {
		return nil
	}
	names := map[string]any{}
	described := map[string]any{}
	for _, s := range sources {
		for name := range s.Claims {
			names[name] = s.Name
		}
		if s.Distributed {
			d := map[string]any{"endpoint": p.endpoint("/claims/" + s.Name)}
			if tok, ok := tokens[s.Name]; ok {
				d["access_token"] = tok
			}
			described[s.Name] = d
			continue
		}
		jwt, err := p.signClaimSource(s, subject, tenant)
		if err != nil {
			return err
		}
		described[s.Name] = map[string]any{"JWT": jwt}
	}
	c["_claim_names"] = names
	c["_claim_sources"] = described
	return nil
}

// signClaimSource signs the claims of source s about subject, with the
// provider's iss.
func (p *Provider) signClaimSource(s ClaimSource, subject, tenant string) (string, error) {
	c := maps.Clone(s.Claims)
	c["iss"] = p.issuer
	c["sub"] = subject
	p.setTenant(c, tenant)
	m := MisbehaveNone
	if s.BadSignature {
		m = BadSignature
	}
	return p.sign(c, m, "JWT")
}

// handleClaimSource serves a distributed source's claims to a request
// with the right Bearer token.
func (p *Provider) handleClaimSource(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	p.mu.Lock()
	p.x.sourceCalls[name]++
	var src *ClaimSource
	for i, s := range p.x.sources {
		if s.Name == name && s.Distributed {
			src = &p.x.sources[i]
		}
	}
	var own string
	var s ClaimSource
	if src != nil {
		s, own = *src, p.x.sourceToken[name]
	}
	p.mu.Unlock()
	if src == nil {
		http.NotFound(w, r)
		return
	}
	scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	subject, tenant, err := p.claimSourceCaller(own, tok)
	if !strings.EqualFold(scheme, "Bearer") || err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		oauthError(w, http.StatusUnauthorized, "invalid_token", "")
		return
	}
	if s.AnswerJSON {
		writeJSON(w, http.StatusOK, s.Claims)
		return
	}
	jwt, err := p.signClaimSource(s, subject, tenant)
	if err != nil {
		oauthError(w, http.StatusInternalServerError, "server_error", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/jwt")
	w.Header().Set("Cache-Control", "no-store")
	fmt.Fprint(w, jwt)
}

// claimSourceCaller checks the token a distributed source was called with:
// its own, if it has one, else a valid access token of the user's. It
// returns whom the claims are about.
func (p *Provider) claimSourceCaller(own, tok string) (subject, tenant string, err error) {
	errToken := errors.New("invalid token")
	if own != "" {
		if tok != own {
			return "", "", errToken
		}
		return p.cfg.Subject, "", nil
	}
	at, ok := p.lookupAccessToken(tok)
	if !ok {
		return "", "", errToken
	}
	return at.subject, p.tokenTenant(tok), nil
}
