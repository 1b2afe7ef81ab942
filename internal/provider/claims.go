package provider

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
)

// ResolveClaimSources resolves the aggregated and distributed claims of a
// claim set (OpenID Connect Core 5.6.2): each claim that _claim_names
// refers to a source of _claim_sources is read from that source, a JWT the
// provider signed (aggregated), or an endpoint called with the source's
// access token, else the user's (distributed), whose answer is a JWT the
// provider signed or JSON. It returns the resolved claims, by name; none
// if the claim set refers to no source.
func (s *State) ResolveClaimSources(ctx context.Context, claims []byte, accessToken string) (map[string]any, error) {
	var members struct {
		Names   json.RawMessage `json:"_claim_names"`
		Sources json.RawMessage `json:"_claim_sources"`
	}
	if err := json.Unmarshal(claims, &members); err != nil || len(members.Names) == 0 {
		return nil, nil
	}
	// Claims that refer to sources which cannot be read are an error, not
	// claims the user does not have: a deny rule would let them pass.
	var refs struct {
		Names   map[string]string
		Sources map[string]struct {
			JWT         string `json:"JWT"`
			Endpoint    string `json:"endpoint"`
			AccessToken string `json:"access_token"`
		}
	}
	if err := json.Unmarshal(members.Names, &refs.Names); err != nil {
		return nil, userinfoError("malformed", "_claim_names is not an object of source names")
	}
	if len(members.Sources) > 0 {
		if err := json.Unmarshal(members.Sources, &refs.Sources); err != nil {
			return nil, userinfoError("malformed", "_claim_sources is not an object of sources")
		}
	}
	if len(refs.Names) == 0 {
		return nil, nil
	}
	// Each source is read once, whatever the number of claims it holds.
	bySource := make(map[string][]string)
	for name, src := range refs.Names {
		bySource[src] = append(bySource[src], name)
	}
	sources := make([]string, 0, len(bySource))
	for src := range bySource {
		sources = append(sources, src)
	}
	sort.Strings(sources)
	out := make(map[string]any)
	for _, src := range sources {
		def, ok := refs.Sources[src]
		if !ok {
			return nil, userinfoError("malformed", "claim source %q is named but not described", truncated(src))
		}
		var payload []byte
		switch {
		case def.JWT != "":
			p, err := s.Verifier.SignedBy(ctx, def.JWT)
			if err != nil {
				return nil, userinfoError("signature", "aggregated claims of source %q were refused: %v", truncated(src), err)
			}
			payload = p
		case def.Endpoint != "":
			tok := def.AccessToken
			if tok == "" {
				tok = accessToken
			}
			body, mt, err := s.get(ctx, def.Endpoint, tok)
			if err != nil {
				return nil, err
			}
			if payload, err = s.readClaims(ctx, body, mt); err != nil {
				return nil, err
			}
		default:
			return nil, userinfoError("malformed", "claim source %q has neither a JWT nor an endpoint", truncated(src))
		}
		dec := json.NewDecoder(bytes.NewReader(payload))
		dec.UseNumber()
		var got map[string]any
		if err := dec.Decode(&got); err != nil {
			return nil, userinfoError("malformed", "claim source %q did not answer with a JSON object", truncated(src))
		}
		for _, name := range bySource[src] {
			if v, ok := got[name]; ok {
				out[name] = v
			}
		}
	}
	return out, nil
}

func truncated(s string) string {
	if len(s) > 60 {
		return fmt.Sprintf("%.60s...", s)
	}
	return s
}
