// Package claims reads the claims of a token or a userinfo answer: by a
// dotted path that reaches nested objects and namespaced names, and
// formatted as text. Placeholders, access rules and the oidc_claim matcher
// read claims the same way through it.
package claims

import (
	"bytes"
	"encoding/json"
	"strings"
)

// Decode decodes a JSON object of claims; numbers stay json.Number, exactly
// as the provider wrote them.
func Decode(b []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	return m, nil
}

// At finds a claim by dotted path. Claim names may contain dots themselves
// (namespaced claims such as "https://example.com/roles"), so at each level
// the whole remaining path is tried as a name first, then every split at a
// dot from the left.
func At(m map[string]any, path string) (any, bool) {
	if v, ok := m[path]; ok {
		return v, true
	}
	for i := 0; i < len(path); i++ {
		if path[i] != '.' {
			continue
		}
		v, ok := m[path[:i]]
		if !ok {
			continue
		}
		if sub, isMap := v.(map[string]any); isMap {
			if c, found := At(sub, path[i+1:]); found {
				return c, true
			}
		}
	}
	return nil, false
}

// Format renders a claim as text: strings as they are, numbers exactly as
// the provider wrote them, arrays joined with ",", objects as JSON.
func Format(v any) string {
	switch c := v.(type) {
	case nil:
		return ""
	case string:
		return c
	case json.Number:
		return c.String()
	case bool:
		if c {
			return "true"
		}
		return "false"
	case []any:
		parts := make([]string, len(c))
		for i, e := range c {
			parts[i] = Format(e)
		}
		return strings.Join(parts, ",")
	default:
		b, err := json.Marshal(c)
		if err != nil {
			return ""
		}
		return string(b)
	}
}

// Scalar returns a top-level claim that is a string, number or boolean, as
// {http.auth.user.<claim>} shows it.
func Scalar(m map[string]any, name string) (any, bool) {
	switch v := m[name].(type) {
	case string:
		return v, true
	case json.Number:
		return v.String(), true
	case bool:
		return v, true
	}
	return nil, false
}
