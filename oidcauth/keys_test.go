package oidcauth

import (
	"bytes"
	"strings"
	"testing"
)

func mustKeyRing(t *testing.T, keys ...string) *keyRing {
	t.Helper()
	var raw [][]byte
	for _, k := range keys {
		b, err := decodeSessionKey(k)
		if err != nil {
			t.Fatal(err)
		}
		raw = append(raw, b)
	}
	kr, err := newKeyRing(raw)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

func TestSealedValueRejectsTampering(t *testing.T) {
	kr := mustKeyRing(t, testKey())
	aad := []byte("purpose")
	sealed := kr.seal([]byte("secret session"), aad)
	for i := range sealed {
		c := bytes.Clone(sealed)
		c[i] ^= 0x80
		if _, err := kr.open(c, aad); err == nil {
			t.Fatalf("a change at byte %d was not detected", i)
		}
	}
	if _, err := kr.open(sealed[:len(sealed)-1], aad); err == nil {
		t.Fatal("a truncated value was accepted")
	}
	if pt, err := kr.open(sealed, aad); err != nil || string(pt) != "secret session" {
		t.Fatalf("open = %q, %v", pt, err)
	}
}

func TestSealedValueIsBoundToItsPurpose(t *testing.T) {
	kr := mustKeyRing(t, testKey())
	sealed := kr.sealString([]byte("x"), []byte("oidc_auth login"))
	if _, err := kr.openString(sealed, []byte("oidc_auth session")); err == nil {
		t.Fatal("a login-state value opened as a session")
	}
}

func TestKeyRingSealsWithFirstAndOpensWithAll(t *testing.T) {
	oldKey, newKey := testKey(), testKey()
	old := mustKeyRing(t, oldKey)
	rotated := mustKeyRing(t, newKey, oldKey)
	sealedOld := old.sealString([]byte("v"), nil)
	if _, err := rotated.openString(sealedOld, nil); err != nil {
		t.Fatal("the rotated ring does not open values sealed with the old key")
	}
	sealedNew := rotated.sealString([]byte("v"), nil)
	if _, err := old.openString(sealedNew, nil); err == nil {
		t.Fatal("the rotated ring still seals with the old key")
	}
}

func TestDecodeSessionKeyNeeds32Bytes(t *testing.T) {
	for _, bad := range []string{"", "short", "c2hvcnQ=", strings.Repeat("A", 60)} {
		if _, err := decodeSessionKey(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := decodeSessionKey(testKey()); err != nil {
		t.Fatal(err)
	}
}
