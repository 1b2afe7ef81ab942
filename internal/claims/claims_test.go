package claims

import "testing"

func decode(t *testing.T, s string) map[string]any {
	t.Helper()
	m, err := Decode([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestClaimPathsReachNestedAndNamespacedClaims(t *testing.T) {
	claims := decode(t, `{
		"email": "a@example.com",
		"address": {"country": "CH", "geo": {"lat": 46.9480}},
		"https://example.com/roles": ["r1", "r2"],
		"a.b": {"c": "dotted key"},
		"a": {"b": {"d": "nested"}},
		"n": 12345678901234567890,
		"f": 1e3,
		"ok": true,
		"none": null,
		"mixed": [1, "x", {"k": "v"}]
	}`)
	for path, want := range map[string]string{
		"email":                     "a@example.com",
		"address.country":           "CH",
		"address.geo.lat":           "46.9480",
		"address.geo":               `{"lat":46.9480}`,
		"https://example.com/roles": "r1,r2",
		"a.b.c":                     "dotted key",
		"a.b.d":                     "nested",
		"n":                         "12345678901234567890",
		"f":                         "1e3",
		"ok":                        "true",
		"none":                      "",
		"mixed":                     `1,x,{"k":"v"}`,
	} {
		v, ok := At(claims, path)
		if !ok {
			t.Errorf("%s: not found", path)
			continue
		}
		if got := Format(v); got != want {
			t.Errorf("%s = %q, want %q", path, got, want)
		}
	}
	for _, missing := range []string{"nope", "address.city", "email.x", ""} {
		if _, ok := At(claims, missing); ok {
			t.Errorf("%q found", missing)
		}
	}
}

func TestScalarIsTopLevelStringNumberOrBoolean(t *testing.T) {
	m := decode(t, `{"s":"x","n":42,"b":true,"a":["x"],"o":{"k":1},"z":null}`)
	for name, want := range map[string]any{"s": "x", "n": "42", "b": true} {
		if got, ok := Scalar(m, name); !ok || got != want {
			t.Errorf("%s = %v, %v; want %v", name, got, ok, want)
		}
	}
	for _, name := range []string{"a", "o", "z", "missing"} {
		if v, ok := Scalar(m, name); ok {
			t.Errorf("%s = %v, want none", name, v)
		}
	}
}
