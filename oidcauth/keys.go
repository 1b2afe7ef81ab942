package oidcauth

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/caddyserver/certmagic"
)

// sessionKeySize is the length of an AES-256 key.
const sessionKeySize = 32

// storageKeyPath is where a generated session key is kept in Caddy's storage,
// so that restarts, reloads and instances sharing storage agree on it.
const storageKeyPath = "oidc_auth/session_key"

// keyRing seals with its first key and opens with any of them, so keys can be
// rotated without signing everyone out: put the new key first and keep the old
// one until its sessions have expired.
type keyRing struct {
	aeads []cipher.AEAD
}

func newKeyRing(keys [][]byte) (*keyRing, error) {
	if len(keys) == 0 {
		return nil, errors.New("no session keys")
	}
	kr := &keyRing{}
	for i, k := range keys {
		if len(k) != sessionKeySize {
			return nil, fmt.Errorf("session key %d: must be %d bytes, got %d", i+1, sessionKeySize, len(k))
		}
		block, err := aes.NewCipher(k)
		if err != nil {
			return nil, fmt.Errorf("session key %d: %v", i+1, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("session key %d: %v", i+1, err)
		}
		kr.aeads = append(kr.aeads, aead)
	}
	return kr, nil
}

// seal encrypts and authenticates plaintext with the first key. The additional
// data binds the ciphertext to its purpose (which cookie, which client), so a
// value sealed for one use is rejected in another.
func (kr *keyRing) seal(plaintext, additionalData []byte) []byte {
	aead := kr.aeads[0]
	out := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	if _, err := rand.Read(out); err != nil {
		// crypto/rand never fails on supported platforms (Go 1.24+ crashes
		// the program instead); keep the check for clarity.
		panic("oidc_auth: reading random nonce: " + err.Error())
	}
	return aead.Seal(out, out, plaintext, additionalData)
}

// errUnsealed is returned for any value no key authenticates: tampered,
// truncated, sealed for another purpose, or sealed with an unknown key.
var errUnsealed = errors.New("value is not authentic")

// open authenticates and decrypts sealed with any key of the ring.
func (kr *keyRing) open(sealed, additionalData []byte) ([]byte, error) {
	for _, aead := range kr.aeads {
		ns := aead.NonceSize()
		if len(sealed) < ns+aead.Overhead() {
			return nil, errUnsealed
		}
		pt, err := aead.Open(nil, sealed[:ns], sealed[ns:], additionalData)
		if err == nil {
			return pt, nil
		}
	}
	return nil, errUnsealed
}

// sealString seals and encodes as unpadded base64url, which is cookie-safe.
func (kr *keyRing) sealString(plaintext, additionalData []byte) string {
	return base64.RawURLEncoding.EncodeToString(kr.seal(plaintext, additionalData))
}

// strictBase64 decodes sealed values: the spare bits of the last character
// must be zero, so that a sealed value has exactly one spelling.
var strictBase64 = base64.RawURLEncoding.Strict()

// openString reverses sealString.
func (kr *keyRing) openString(s string, additionalData []byte) ([]byte, error) {
	raw, err := strictBase64.DecodeString(s)
	if err != nil {
		return nil, errUnsealed
	}
	return kr.open(raw, additionalData)
}

// decodeSessionKey accepts a 32-byte key written in standard or URL-safe
// base64, padded or not.
func decodeSessionKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(s); err == nil {
			if len(k) != sessionKeySize {
				return nil, fmt.Errorf("must decode to %d bytes, got %d (generate one with: openssl rand -base64 32)", sessionKeySize, len(k))
			}
			return k, nil
		}
	}
	return nil, errors.New("is not base64 (generate one with: openssl rand -base64 32)")
}

// loadOrCreateStoredKey returns the session key kept in Caddy's storage,
// creating it under the storage lock if it does not exist yet, so that
// instances sharing storage and starting together agree on one key.
func loadOrCreateStoredKey(ctx context.Context, storage certmagic.Storage) ([]byte, error) {
	if storage == nil {
		return nil, errors.New("no storage configured")
	}
	if k, err := loadStoredKey(ctx, storage); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	if err := storage.Lock(ctx, storageKeyPath); err != nil {
		return nil, fmt.Errorf("locking %s: %v", storageKeyPath, err)
	}
	defer func() { _ = storage.Unlock(context.Background(), storageKeyPath) }()
	if k, err := loadStoredKey(ctx, storage); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	k := make([]byte, sessionKeySize)
	if _, err := rand.Read(k); err != nil {
		return nil, err
	}
	if err := storage.Store(ctx, storageKeyPath, []byte(base64.StdEncoding.EncodeToString(k))); err != nil {
		return nil, fmt.Errorf("storing %s: %v", storageKeyPath, err)
	}
	return k, nil
}

type keyLoader interface {
	Load(ctx context.Context, key string) ([]byte, error)
}

func loadStoredKey(ctx context.Context, storage keyLoader) ([]byte, error) {
	b, err := storage.Load(ctx, storageKeyPath)
	if err != nil {
		return nil, err
	}
	k, err := decodeSessionKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("stored session key %s %v", storageKeyPath, err)
	}
	return k, nil
}
