package tokeninject

import (
	"sync"
	"unsafe"
)

// substitutedValues remembers recent header values with the token put in,
// per input value and token. Most requests of a session send the same
// header (`Bearer <<...>>`), and building the substituted value means
// allocating and copying the whole token, every time.
type substitutedValues struct {
	mu      sync.RWMutex
	entries map[valueKey]substitutedValue
	max     int
}

// valueKey identifies a token by where its bytes are: a session's token is
// one string shared by all its requests. The entry also keeps the token
// itself, which is compared on every hit, so a reused address can never
// yield another token's value.
type valueKey struct {
	in    string
	token uintptr
}

type substitutedValue struct {
	token, out string
}

func newSubstitutedValues(max int) *substitutedValues {
	return &substitutedValues{entries: make(map[valueKey]substitutedValue), max: max}
}

func (c *substitutedValues) get(in, token string) (string, bool) {
	k := valueKey{in, uintptr(unsafe.Pointer(unsafe.StringData(token)))}
	c.mu.RLock()
	e, ok := c.entries[k]
	c.mu.RUnlock()
	if !ok || e.token != token {
		return "", false
	}
	return e.out, true
}

func (c *substitutedValues) put(in, token, out string) {
	k := valueKey{in, uintptr(unsafe.Pointer(unsafe.StringData(token)))}
	c.mu.Lock()
	if len(c.entries) >= c.max {
		n := c.max / 10 // evict an arbitrary tenth; a miss costs one copy
		for k := range c.entries {
			delete(c.entries, k)
			if n--; n <= 0 {
				break
			}
		}
	}
	c.entries[k] = substitutedValue{token, out}
	c.mu.Unlock()
}
