// Package substitute replaces fixed patterns (such as the placeholder
// "<<APPSMITH_USER_OAUTH2_ACCESS_TOKEN>>") with replacement strings in
// strings, byte slices and streams.
//
// Matching rules, shared by every function in this package: the input is
// scanned left to right; at the leftmost position where any pattern matches,
// the longest pattern matching there is replaced, and scanning continues
// after the matched text. Replacement text is never rescanned, and
// overlapping matches are not replaced twice. When the same pattern is given
// more than once, the first pair wins.
//
// The streaming forms (Reader, Writer) produce exactly the output Replace
// would produce for the whole input, however it is split, and hold back at
// most MaxPatternLen()-1 bytes between calls.
//
// Construction is cheap (one allocation for up to two pairs) so a Replacer
// can be built per request, and matching uses strings.Index/IndexByte, which
// are vectorised.
package substitute

import (
	"strings"
	"unsafe"
)

// pair is one pattern and its replacement.
type pair struct {
	old, new string
	// The pattern is searched for through its anchor old[off:off+alen],
	// which starts at a byte chosen to be rare in typical text so that the
	// vectorised IndexByte inside strings.Index skips most of the input.
	// This matters for tokens such as JWTs ("eyJ..."): a search led by 'e'
	// stops at almost every word of a JSON body.
	off, alen int
}

// anchorMax is the longest anchor; anchors are chosen among the first
// anchorScan bytes of a pattern.
const (
	anchorMax  = 16
	anchorScan = 64
)

func newPair(old, new string) pair {
	off, rank := 0, rarityTable[old[0]]
	for i := 1; i < min(len(old), anchorScan); i++ {
		if r := rarityTable[old[i]]; r < rank {
			off, rank = i, r
		}
	}
	alen := min(len(old)-off, anchorMax)
	if off == 0 && len(old) <= 2*anchorMax {
		alen = len(old)
	}
	return pair{old: old, new: new, off: off, alen: alen}
}

// rarityTable holds rarity for every byte (shared, built once).
var rarityTable = func() (t [256]uint8) {
	for c := range t {
		t[c] = uint8(rarity(byte(c)))
	}
	return t
}()

// rarity ranks how common a byte is in typical HTTP text (headers, JSON,
// HTML, form data); lower is rarer. It only guides the choice of anchor.
func rarity(c byte) int {
	switch {
	case c >= 0x80:
		return 3
	case c >= 'A' && c <= 'Z':
		return 4
	case c >= '0' && c <= '9':
		return 6
	case c >= 'a' && c <= 'z':
		switch c {
		case 'b', 'f', 'g', 'j', 'k', 'p', 'q', 'v', 'w', 'x', 'y', 'z':
			return 6
		}
		return 8
	}
	switch c {
	case ' ':
		return 8
	case '"', ',', ':', '.', '/', '-', '_':
		return 7
	case '%', '&', '+', ';', '?', '\'', '(', ')', '[', ']', '{', '}', '=', '\t', '\r', '\n':
		return 5
	case '<', '>', '!', '#', '$', '*', '@', '\\', '^', '`', '|', '~':
		return 2
	}
	return 1 // other control bytes
}

// index returns the position of the first occurrence of p.old in s at or
// after pos, or -1.
func (p *pair) index(s string, pos int) int {
	if p.alen == len(p.old) {
		if i := strings.Index(s[pos:], p.old); i >= 0 {
			return pos + i
		}
		return -1
	}
	anchor := p.old[p.off : p.off+p.alen]
	last := len(s) - len(p.old) + p.off // last possible anchor position
	fails := 0
	for from := pos + p.off; from <= last; {
		i := strings.Index(s[from:last+p.alen], anchor)
		if i < 0 {
			return -1
		}
		t := from + i - p.off
		if s[t:t+len(p.old)] == p.old {
			return t
		}
		from += i + 1
		// Too many false anchor hits (repetitive text): let strings.Index,
		// which guarantees linear time, search the rest.
		if fails++; fails > 4+(from-pos)>>4 {
			if i := strings.Index(s[t+1:], p.old); i >= 0 {
				return t + 1 + i
			}
			return -1
		}
	}
	return -1
}

// Replacer replaces occurrences of fixed patterns with replacements.
// A Replacer is immutable and safe for concurrent use; a nil *Replacer has no
// patterns.
type Replacer struct {
	pairs  []pair
	maxLen int
	small  [2]pair // backing store for pairs when there are at most two
}

// New returns a Replacer for old/new pairs: New(old1, new1, old2, new2, ...).
// Empty old strings are ignored; when an old string is repeated, the first
// pair wins. An odd number of arguments panics.
func New(oldnew ...string) *Replacer {
	if len(oldnew)%2 == 1 {
		panic("substitute.New: odd argument count")
	}
	r := &Replacer{}
	if len(oldnew) <= 2*len(r.small) {
		r.pairs = r.small[:0]
	} else {
		r.pairs = make([]pair, 0, len(oldnew)/2)
	}
outer:
	for i := 0; i < len(oldnew); i += 2 {
		old := oldnew[i]
		if old == "" {
			continue
		}
		for _, p := range r.pairs {
			if p.old == old {
				continue outer
			}
		}
		r.pairs = append(r.pairs, newPair(old, oldnew[i+1]))
		r.maxLen = max(r.maxLen, len(old))
	}
	return r
}

// MaxPatternLen returns the length of the longest pattern (0 if there are
// none). Streaming holds back at most MaxPatternLen()-1 bytes.
func (r *Replacer) MaxPatternLen() int {
	if r == nil {
		return 0
	}
	return r.maxLen
}

func (r *Replacer) empty() bool { return r == nil || len(r.pairs) == 0 }

// Replace returns s with every occurrence replaced, and whether anything was
// replaced. When nothing matches it returns s itself without allocating.
func (r *Replacer) Replace(s string) (string, bool) {
	if r.empty() {
		return s, false
	}
	var arr [stackSlots]int
	m := r.newMatcher(arr[:])
	at, idx := m.find(s, 0)
	if idx < 0 {
		return s, false
	}
	p := &r.pairs[idx]
	pos := at + len(p.old)
	next, nidx := m.find(s, pos)
	if nidx < 0 {
		// One match (the common case): a single exact-size allocation.
		return s[:at] + p.new + s[pos:], true
	}
	var b strings.Builder
	b.Grow(len(s) + 2*max(0, len(p.new)-len(p.old)))
	b.WriteString(s[:at])
	b.WriteString(p.new)
	at, idx = next, nidx
	for idx >= 0 {
		p := &r.pairs[idx]
		b.WriteString(s[pos:at])
		b.WriteString(p.new)
		pos = at + len(p.old)
		at, idx = m.find(s, pos)
	}
	b.WriteString(s[pos:])
	return b.String(), true
}

// Contains reports whether s contains any pattern (that is, whether Replace
// would replace anything).
func (r *Replacer) Contains(s string) bool {
	if r.empty() {
		return false
	}
	for i := range r.pairs {
		if r.pairs[i].index(s, 0) >= 0 {
			return true
		}
	}
	return false
}

// ContainsBytes reports whether b contains any pattern.
func (r *Replacer) ContainsBytes(b []byte) bool {
	return r.Contains(bytesView(b))
}

// AppendReplace appends src with replacements applied to dst and returns the
// extended slice and the number of replacements made. dst's spare capacity
// must not overlap src.
func (r *Replacer) AppendReplace(dst, src []byte) (out []byte, n int) {
	if r.empty() {
		return append(dst, src...), 0
	}
	var arr [stackSlots]int
	m := r.newMatcher(arr[:])
	s := bytesView(src)
	pos := 0
	for {
		at, idx := m.find(s, pos)
		if idx < 0 {
			return append(dst, s[pos:]...), n
		}
		p := &r.pairs[idx]
		dst = append(dst, s[pos:at]...)
		dst = append(dst, p.new...)
		pos = at + len(p.old)
		n++
	}
}

// Count returns the number of non-overlapping occurrences in b (under the
// same matching rules as Replace) and the total length change if all of them
// were replaced.
func (r *Replacer) Count(b []byte) (n int, delta int) {
	if r.empty() {
		return 0, 0
	}
	var arr [stackSlots]int
	m := r.newMatcher(arr[:])
	s := bytesView(b)
	pos := 0
	for {
		at, idx := m.find(s, pos)
		if idx < 0 {
			return n, delta
		}
		p := &r.pairs[idx]
		n++
		delta += len(p.new) - len(p.old)
		pos = at + len(p.old)
	}
}

// bytesView returns the contents of b as a string without copying. The
// result must not be retained once b may change.
func bytesView(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// stackSlots is how many patterns the one-shot functions can track without
// allocating.
const stackSlots = 16

// notFound marks a pattern with no further occurrence in the current buffer.
const notFound = int(^uint(0) >> 1)

// matcher finds leftmost-longest matches. For several patterns it caches, per
// pattern, the position of its next occurrence at or after some earlier
// search position, so each pattern scans the buffer about once however many
// matches are found. The cache is only valid while the buffer is unchanged;
// call reset when it changes.
type matcher struct {
	pairs  []pair
	maxLen int
	next   []int // per pattern: cached next occurrence, notFound, or < pos if unknown
}

// newMatcher returns a matcher for r using scratch (if large enough) for its
// cache.
func (r *Replacer) newMatcher(scratch []int) matcher {
	m := matcher{pairs: r.pairs, maxLen: r.maxLen}
	if len(r.pairs) > 1 {
		if len(r.pairs) <= len(scratch) {
			m.next = scratch[:len(r.pairs)]
		} else {
			m.next = make([]int, len(r.pairs))
		}
		m.reset()
	}
	return m
}

// reset forgets cached positions (after the buffer changed).
func (m *matcher) reset() {
	for i := range m.next {
		m.next[i] = -1
	}
}

// find returns the leftmost position at or after pos where a pattern occurs
// in s, and the index of the longest pattern occurring there, or (-1, -1).
func (m *matcher) find(s string, pos int) (at, idx int) {
	if len(m.pairs) == 1 {
		if at = m.pairs[0].index(s, pos); at < 0 {
			return -1, -1
		}
		return at, 0
	}
	at, idx = -1, -1
	for j := range m.pairs {
		c := m.next[j]
		if c < pos {
			if c = m.pairs[j].index(s, pos); c < 0 {
				c = notFound
			}
			m.next[j] = c
		}
		if c == notFound {
			continue
		}
		if idx < 0 || c < at || (c == at && len(m.pairs[j].old) > len(m.pairs[idx].old)) {
			at, idx = c, j
		}
	}
	return at, idx
}

// step decides what to do with s[pos:] when s may be followed by more input
// (final == false) or is the end of the input (final == true).
//
// If idx >= 0, s[pos:at] is literal and pattern idx matches at at.
// If idx < 0, s[pos:at] is literal and s[at:] is a possible pattern prefix
// that must be held back until more input arrives (at == len(s) when there
// is nothing to hold back; always so when final).
func (m *matcher) step(s string, pos int, final bool) (at, idx int) {
	at, idx = m.find(s, pos)
	if final {
		if idx < 0 {
			return len(s), -1
		}
		return at, idx
	}
	// A match starting before limit is fully visible, whichever pattern it
	// is, so it is decided; so is the absence of a match there.
	limit := len(s) - m.maxLen + 1
	if idx >= 0 && at < limit {
		return at, idx
	}
	to := len(s) - 1
	if idx >= 0 {
		to = at
	}
	if q := m.partial(s, max(pos, limit), to); q >= 0 {
		// Text from q on may start a (longer) match: decide nothing there.
		return q, -1
	}
	if idx >= 0 {
		return at, idx
	}
	return len(s), -1
}

// partial returns the smallest q in [from, to] (q < len(s)) such that s[q:]
// is a proper prefix of some pattern, or -1.
func (m *matcher) partial(s string, from, to int) int {
	end := min(to+1, len(s)) // exclusive bound on q
	best := -1
	for j := range m.pairs {
		pat := m.pairs[j].old
		lo := max(from, len(s)-len(pat)+1)
		hi := end
		if best >= 0 {
			hi = best
		}
		c := pat[0]
		for lo < hi {
			i := strings.IndexByte(s[lo:hi], c)
			if i < 0 {
				break
			}
			q := lo + i
			if strings.HasPrefix(pat, s[q:]) {
				best = q
				break
			}
			lo = q + 1
		}
	}
	return best
}
