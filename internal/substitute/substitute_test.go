package substitute

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
	"unsafe"
)

const placeholder = "<<APPSMITH_USER_OAUTH2_ACCESS_TOKEN>>"

// reference is a deliberately naive implementation of the matching rules.
func reference(s string, oldnew ...string) (string, int) {
	var olds, news []string
	for i := 0; i < len(oldnew); i += 2 {
		if oldnew[i] == "" || contains(olds, oldnew[i]) {
			continue
		}
		olds = append(olds, oldnew[i])
		news = append(news, oldnew[i+1])
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(s); {
		best := -1
		for j, o := range olds {
			if strings.HasPrefix(s[i:], o) && (best < 0 || len(o) > len(olds[best])) {
				best = j
			}
		}
		if best < 0 {
			b.WriteByte(s[i])
			i++
			continue
		}
		b.WriteString(news[best])
		i += len(olds[best])
		n++
	}
	return b.String(), n
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

var ruleCases = []struct {
	name   string
	oldnew []string
	in     string
	want   string
}{
	{"no patterns", nil, "abc", "abc"},
	{"empty input", []string{"a", "b"}, "", ""},
	{"no match", []string{placeholder, "TOK"}, "Bearer xyz", "Bearer xyz"},
	{"header placeholder", []string{placeholder, "TOK"}, "Bearer " + placeholder, "Bearer TOK"},
	{"every occurrence", []string{"ab", "X"}, "ab-ab-abab", "X-X-XX"},
	{"empty pattern ignored", []string{"", "E", "a", "b"}, "aXa", "bXb"},
	{"only empty pattern", []string{"", "E"}, "abc", "abc"},
	{"leftmost wins over longer later", []string{"bcd", "1", "abc", "2"}, "abcd", "2d"},
	{"longest at same position", []string{"ab", "1", "abc", "2"}, "abcab", "21"},
	{"longest regardless of order", []string{"abc", "2", "ab", "1"}, "abcab", "21"},
	{"first duplicate wins", []string{"a", "1", "a", "2"}, "aa", "11"},
	{"no overlap", []string{"aa", "X"}, "aaa", "Xa"},
	{"overlapping placeholder text", []string{"<<X>>", "T"}, "<<<X>>>", "<T>"},
	{"doubled brackets", []string{"<<X>>", "T"}, "<<<<X>>>>", "<<T>>"},
	{"replacement not rescanned", []string{"<<X>>", "<<X>><<X>>"}, "a<<X>>b", "a<<X>><<X>>b"},
	{"replacement forms pattern with context", []string{"X>>", "<<X>>"}, "<<X>>", "<<<<X>>"},
	{"prefix patterns", []string{"<<A", "1", "<<AB>>", "2"}, "<<A <<AB>> <<AB", "1 2 1B"},
	{"nul bytes", []string{"\x00\x01", "Z"}, "a\x00\x00\x01\x00", "a\x00Z\x00"},
	{"deletion", []string{"secret", ""}, "a secret b", "a  b"},
	{"whole input", []string{"abc", "xyz"}, "abc", "xyz"},
	{"unicode", []string{"é", "e"}, "café é", "cafe e"},
	{"long replacement", []string{"<<A>>", strings.Repeat("t", 5000)}, "x<<A>>y<<A>>", "x" + strings.Repeat("t", 5000) + "y" + strings.Repeat("t", 5000)},
	{"redact token", []string{"tok123", placeholder}, `{"t":"tok123"}`, `{"t":"` + placeholder + `"}`},
}

func TestReplaceFollowsMatchingRules(t *testing.T) {
	for _, tc := range ruleCases {
		t.Run(tc.name, func(t *testing.T) {
			r := New(tc.oldnew...)
			got, ok := r.Replace(tc.in)
			if got != tc.want {
				t.Errorf("Replace(%q) = %q, want %q", tc.in, got, tc.want)
			}
			if ok != (got != tc.in || r.Contains(tc.in)) {
				t.Errorf("Replace(%q) reported %v", tc.in, ok)
			}
			if ref, _ := reference(tc.in, tc.oldnew...); ref != tc.want {
				t.Errorf("reference(%q) = %q, want %q (bad test case)", tc.in, ref, tc.want)
			}
		})
	}
}

func TestAllFormsAgreeOnRules(t *testing.T) {
	for _, tc := range ruleCases {
		t.Run(tc.name, func(t *testing.T) {
			checkAllForms(t, tc.in, tc.oldnew, rand.New(rand.NewPCG(1, 2)))
		})
	}
}

func TestReplaceReturnsInputWithoutAllocatingWhenNothingMatches(t *testing.T) {
	r := New(placeholder, "tok", "<<OTHER>>", "x")
	s := strings.Repeat("Bearer something-else ", 10)
	if got, ok := r.Replace(s); ok || got != s {
		t.Fatalf("Replace changed input")
	}
	if got, _ := r.Replace(s); unsafe.StringData(got) != unsafe.StringData(s) {
		t.Errorf("Replace returned a copy")
	}
	if a := testing.AllocsPerRun(100, func() { r.Replace(s) }); a != 0 {
		t.Errorf("Replace without match allocated %v times", a)
	}
	b := []byte(s)
	if a := testing.AllocsPerRun(100, func() { r.Count(b); r.ContainsBytes(b) }); a != 0 {
		t.Errorf("Count/ContainsBytes allocated %v times", a)
	}
}

func TestReplaceHeaderAllocatesOnce(t *testing.T) {
	r := New(placeholder, strings.Repeat("t", 1200))
	if a := testing.AllocsPerRun(100, func() { r.Replace("Bearer " + placeholder) }); a > 1 {
		t.Errorf("Replace allocated %v times, want 1", a)
	}
}

func TestNewIsCheap(t *testing.T) {
	tok := strings.Repeat("t", 1200)
	if a := testing.AllocsPerRun(100, func() { New(placeholder, tok) }); a > 1 {
		t.Errorf("New with one pair allocated %v times", a)
	}
	if a := testing.AllocsPerRun(100, func() { New("a", "b", "c", "d", "e", "f") }); a > 2 {
		t.Errorf("New with three pairs allocated %v times", a)
	}
}

func TestNewPanicsOnOddArguments(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("no panic")
		}
	}()
	New("a")
}

func TestNilAndEmptyReplacerPassThrough(t *testing.T) {
	for _, r := range []*Replacer{nil, New(), New("", "x")} {
		if got, ok := r.Replace("abc"); got != "abc" || ok {
			t.Errorf("Replace = %q, %v", got, ok)
		}
		if r.Contains("abc") || r.ContainsBytes([]byte("abc")) || r.MaxPatternLen() != 0 {
			t.Error("empty replacer matched")
		}
		out, n := r.AppendReplace([]byte("x"), []byte("abc"))
		if string(out) != "xabc" || n != 0 {
			t.Errorf("AppendReplace = %q, %d", out, n)
		}
		if n, d := r.Count([]byte("abc")); n != 0 || d != 0 {
			t.Errorf("Count = %d, %d", n, d)
		}
		got, err := io.ReadAll(r.Reader(strings.NewReader("abc")))
		if string(got) != "abc" || err != nil {
			t.Errorf("Reader = %q, %v", got, err)
		}
		var buf bytes.Buffer
		w := r.Writer(&buf)
		io.WriteString(w, "abc")
		if err := w.Close(); err != nil || buf.String() != "abc" {
			t.Errorf("Writer = %q, %v", buf.String(), err)
		}
	}
}

func TestMaxPatternLen(t *testing.T) {
	if got := New("ab", "x", "abcd", "", "", "zzzzzz").MaxPatternLen(); got != 4 {
		t.Errorf("MaxPatternLen = %d, want 4", got)
	}
}

func TestCountReportsOccurrencesAndLengthChange(t *testing.T) {
	r := New("<<A>>", "12345678", "<<B>>", "")
	n, d := r.Count([]byte("<<A>> <<B>> <<<A>>> <<A"))
	if n != 3 || d != 2*3-5 {
		t.Errorf("Count = %d, %d; want 3, 1", n, d)
	}
}

func TestContainsMatchesReplace(t *testing.T) {
	r := New("<<A>>", "x", "zz", "y")
	for _, s := range []string{"", "<<A>", "a<<A>>", "z", "zz", "<<<A>>"} {
		_, ok := r.Replace(s)
		if r.Contains(s) != ok || r.ContainsBytes([]byte(s)) != ok {
			t.Errorf("Contains(%q) disagrees with Replace (%v)", s, ok)
		}
	}
}

func TestAppendReplaceAppendsToDst(t *testing.T) {
	r := New("<<A>>", "tok")
	out, n := r.AppendReplace([]byte("pre:"), []byte("<<A>>-<<A>>"))
	if string(out) != "pre:tok-tok" || n != 2 {
		t.Errorf("AppendReplace = %q, %d", out, n)
	}
}

// checkAllForms checks that every form of replacement agrees with the
// reference for in, using random chunkings drawn from rng.
func checkAllForms(t *testing.T, in string, oldnew []string, rng *rand.Rand) {
	t.Helper()
	r := New(oldnew...)
	want, wantN := reference(in, oldnew...)
	got, ok := r.Replace(in)
	if got != want || ok != (wantN > 0) {
		t.Fatalf("Replace(%q) = %q, %v; want %q, %v (pairs %q)", in, got, ok, want, wantN > 0, oldnew)
	}
	out, n := r.AppendReplace(nil, []byte(in))
	if string(out) != want || n != wantN {
		t.Fatalf("AppendReplace(%q) = %q, %d; want %q, %d", in, out, n, want, wantN)
	}
	n, delta := r.Count([]byte(in))
	if n != wantN || delta != len(want)-len(in) {
		t.Fatalf("Count(%q) = %d, %d; want %d, %d", in, n, delta, wantN, len(want)-len(in))
	}
	if r.Contains(in) != (wantN > 0) {
		t.Fatalf("Contains(%q) = %v", in, !(wantN > 0))
	}
	maxHold := max(r.MaxPatternLen()-1, 0)
	srcs := map[string]func() io.Reader{
		"whole":      func() io.Reader { return strings.NewReader(in) },
		"onebyte":    func() io.Reader { return iotest.OneByteReader(strings.NewReader(in)) },
		"half":       func() io.Reader { return iotest.HalfReader(strings.NewReader(in)) },
		"dataerr":    func() io.Reader { return iotest.DataErrReader(strings.NewReader(in)) },
		"random":     func() io.Reader { return &chunkReader{data: []byte(in), rng: rng} },
		"randomdata": func() io.Reader { return iotest.DataErrReader(&chunkReader{data: []byte(in), rng: rng}) },
	}
	for name, src := range srcs {
		got, err := readAllChunked(r.Reader(src()), rng)
		if err != nil || string(got) != want {
			t.Fatalf("Reader(%s)(%q) = %q, %v; want %q (pairs %q)", name, in, got, err, want, oldnew)
		}
	}
	for _, mode := range []string{"whole", "onebyte", "random"} {
		var buf bytes.Buffer
		w := r.Writer(&buf)
		for rest := []byte(in); len(rest) > 0; {
			k := len(rest)
			switch mode {
			case "onebyte":
				k = 1
			case "random":
				k = min(len(rest), rng.IntN(2*r.MaxPatternLen()+3))
			}
			if _, err := w.Write(rest[:k]); err != nil {
				t.Fatal(err)
			}
			if len(w.hold) > maxHold {
				t.Fatalf("Writer holds %d bytes, more than %d", len(w.hold), maxHold)
			}
			rest = rest[k:]
			if rng.IntN(4) == 0 {
				if err := w.Flush(); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if buf.String() != want {
			t.Fatalf("Writer(%s)(%q) = %q; want %q (pairs %q)", mode, in, buf.String(), want, oldnew)
		}
		if _, err := w.Write([]byte("x")); err == nil {
			t.Fatal("Write after Close succeeded")
		}
	}
}

// chunkReader returns data in random-sized chunks, sometimes empty.
type chunkReader struct {
	data []byte
	rng  *rand.Rand
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	k := min(len(p), len(c.data), c.rng.IntN(12))
	n := copy(p[:k], c.data)
	c.data = c.data[n:]
	return n, nil
}

// readAllChunked reads r to EOF with random read sizes.
func readAllChunked(r io.Reader, rng *rand.Rand) ([]byte, error) {
	var out []byte
	buf := make([]byte, 64)
	for {
		k := 1 + rng.IntN(len(buf))
		n, err := r.Read(buf[:k])
		out = append(out, buf[:n]...)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}

func randomString(rng *rand.Rand, alphabet string, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[rng.IntN(len(alphabet))]
	}
	return string(b)
}

func TestStreamingMatchesReplaceForRandomInputs(t *testing.T) {
	rng := rand.New(rand.NewPCG(42, 7))
	iters := 3000
	if testing.Short() {
		iters = 300
	}
	for i := range iters {
		alphabet := "<>X\x00"[:2+rng.IntN(3)]
		var oldnew []string
		for range 1 + rng.IntN(4) {
			oldnew = append(oldnew, randomString(rng, alphabet, rng.IntN(6)), randomString(rng, "<>XR", rng.IntN(5)))
		}
		if i%5 == 0 {
			oldnew = append(oldnew, placeholder, "T"+placeholder)
		}
		in := randomString(rng, alphabet, rng.IntN(200))
		if i%5 == 0 {
			in = strings.ReplaceAll(in, "X", placeholder[:rng.IntN(len(placeholder)+1)])
		}
		checkAllForms(t, in, oldnew, rng)
	}
}

func TestStreamingLargeInputsAcrossBufferBoundaries(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	tok := strings.Repeat("T", 1200)
	var b strings.Builder
	for b.Len() < 3*readBufSize {
		b.WriteString(randomString(rng, "ab<>", rng.IntN(300)))
		switch rng.IntN(3) {
		case 0:
			b.WriteString(placeholder)
		case 1:
			b.WriteString(placeholder[:rng.IntN(len(placeholder))])
		default:
			b.WriteString(tok[:rng.IntN(len(tok))+1])
		}
	}
	in := b.String()
	checkAllForms(t, in, []string{placeholder, tok}, rng)
	checkAllForms(t, in, []string{tok, placeholder, "<<", "<"}, rng)
	// A pattern as long as the buffer.
	long := strings.Repeat("<", readBufSize)
	checkAllForms(t, strings.Repeat("<", 3*readBufSize+5), []string{long, "L", "<<", "s"}, rng)
}

func TestLongPatternsWithRareAnchor(t *testing.T) {
	jwt := "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl" // anchored at 'J', offset 2
	if p := newPair(jwt, ""); p.off != 2 || p.alen != anchorMax {
		t.Fatalf("anchor of %q = %d+%d", jwt, p.off, p.alen)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	pieces := []string{jwt, jwt[:len(jwt)-1], jwt[1:], jwt[:3], "eyJ", "J", "e", `{"a":"`, "\"}"}
	for range 300 {
		var b strings.Builder
		for range rng.IntN(12) {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		}
		checkAllForms(t, b.String(), []string{jwt, placeholder, "eyJzdWIiOiJhbGljZSJ9", "<<SUB>>"}, rng)
	}
	for _, in := range []string{jwt, "x" + jwt, jwt + "x", "ee" + jwt + jwt[:20], jwt[:2] + jwt} {
		checkAllForms(t, in, []string{jwt, "T"}, rng)
	}
}

func TestAnchoredIndexAgreesWithStringsIndex(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 9))
	for range 2000 {
		alphabet := []string{"ab", "aB", "a<", "eyJ"}[rng.IntN(4)]
		pat := randomString(rng, alphabet, 1+rng.IntN(80))
		if rng.IntN(2) == 0 {
			pat = strings.Repeat("a", 1+rng.IntN(60)) + pat
		}
		s := randomString(rng, alphabet, rng.IntN(400))
		if rng.IntN(2) == 0 {
			s = strings.Repeat("a", rng.IntN(300)) + s
		}
		if rng.IntN(3) == 0 {
			i := rng.IntN(len(s) + 1)
			s = s[:i] + pat + s[i:]
		}
		p := newPair(pat, "")
		pos := rng.IntN(len(s) + 1)
		want := strings.Index(s[pos:], pat)
		if want >= 0 {
			want += pos
		}
		if got := p.index(s, pos); got != want {
			t.Fatalf("index(%q, %d) of %q (anchor %d+%d) = %d, want %d", s, pos, pat, p.off, p.alen, got, want)
		}
	}
}

// genReader generates n bytes of JSON-like text containing placeholders and
// placeholder prefixes, without keeping it in memory.
type genReader struct {
	n, off int
	unit   []byte
}

func (g *genReader) Read(p []byte) (int, error) {
	if g.n == 0 {
		return 0, io.EOF
	}
	p = p[:min(len(p), g.n)]
	for i := range p {
		p[i] = g.unit[g.off]
		g.off = (g.off + 1) % len(g.unit)
	}
	g.n -= len(p)
	return len(p), nil
}

func TestReaderMemoryIsBounded(t *testing.T) {
	const size = 64 << 20
	unit := []byte(`{"a":"` + placeholder + `","b":"<<APPSMITH_USER_OAUTH2_ACC","c":"` + strings.Repeat("x", 200) + `"},`)
	r := New(placeholder, strings.Repeat("T", 1200))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var n int64
	allocs := testing.AllocsPerRun(1, func() {
		var err error
		n, err = io.CopyBuffer(io.Discard, onlyReader{r.Reader(&genReader{n: size, unit: unit})}, make([]byte, 8<<10))
		if err != nil {
			t.Fatal(err)
		}
	})
	runtime.ReadMemStats(&after)
	if n <= size {
		t.Fatalf("copied %d bytes, expected expansion beyond %d", n, size)
	}
	if allocs > 10 {
		t.Errorf("streaming 64 MiB allocated %v times", allocs)
	}
	// Two runs (AllocsPerRun warms up once).
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
		t.Errorf("streaming 64 MiB allocated %d bytes in total", grew)
	}
}

// onlyReader hides any other methods of the wrapped reader.
type onlyReader struct{ io.Reader }

func TestReaderHandlesDataWithEOFAndErrors(t *testing.T) {
	r := New("<<A>>", "tok")
	got, err := io.ReadAll(r.Reader(iotest.DataErrReader(strings.NewReader("x<<A"))))
	if err != nil || string(got) != "x<<A" {
		t.Errorf("ReadAll = %q, %v", got, err)
	}
	boom := errors.New("boom")
	src := io.MultiReader(strings.NewReader("x<<A>> <<A"), iotest.ErrReader(boom))
	got, err = io.ReadAll(r.Reader(src))
	if err != boom || string(got) != "xtok <<A" {
		t.Errorf("ReadAll = %q, %v; want data then boom", got, err)
	}
	rd := r.Reader(zeroReader{})
	if _, err := rd.Read(make([]byte, 10)); err != io.ErrNoProgress {
		t.Errorf("Read from a reader making no progress = %v", err)
	}
}

type zeroReader struct{}

func (zeroReader) Read([]byte) (int, error) { return 0, nil }

func TestReaderDoesNotBlockWhileHoldingOutput(t *testing.T) {
	r := New("<<A>>", "tok")
	pr, pw := io.Pipe()
	rd := r.Reader(pr)
	go pw.Write([]byte("hello <<A>> <<"))
	buf := make([]byte, 100)
	n, err := rd.Read(buf)
	if err != nil || string(buf[:n]) != "hello tok " {
		t.Fatalf("Read = %q, %v", buf[:n], err)
	}
	go func() { pw.Write([]byte("A>>!")); pw.Close() }()
	rest, err := io.ReadAll(rd)
	if err != nil || string(rest) != "tok!" {
		t.Fatalf("rest = %q, %v", rest, err)
	}
}

func TestWriterHoldsBackOnlyPossiblePrefix(t *testing.T) {
	r := New(placeholder, "tok")
	var buf bytes.Buffer
	w := r.Writer(&buf)
	io.WriteString(w, "data: <<APPSMITH_")
	if buf.String() != "data: " {
		t.Errorf("after partial placeholder, wrote %q", buf.String())
	}
	io.WriteString(w, "USER_OAUTH2_ACCESS_TOKEN>> <")
	if buf.String() != "data: tok " {
		t.Errorf("after completing placeholder, wrote %q", buf.String())
	}
	io.WriteString(w, "x")
	if buf.String() != "data: tok <x" {
		t.Errorf("after breaking prefix, wrote %q", buf.String())
	}
	io.WriteString(w, "<<")
	if err := w.Flush(); err != nil || buf.String() != "data: tok <x" {
		t.Errorf("Flush wrote %q, %v", buf.String(), err)
	}
	if err := w.Close(); err != nil || buf.String() != "data: tok <x<<" {
		t.Errorf("Close wrote %q, %v", buf.String(), err)
	}
}

type countingWriter struct {
	calls int
	bytes.Buffer
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.calls++
	return c.Buffer.Write(p)
}

func TestWriterPassesLargeWritesThrough(t *testing.T) {
	r := New(placeholder, "tok")
	in := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	var cw countingWriter
	w := r.Writer(&cw)
	if n, err := w.Write(in); n != len(in) || err != nil {
		t.Fatal(n, err)
	}
	if cw.calls != 1 || !bytes.Equal(cw.Bytes(), in) {
		t.Errorf("large write took %d calls", cw.calls)
	}
	if a := testing.AllocsPerRun(10, func() { w.Write(in) }); a != 0 {
		t.Errorf("large write allocated %v times", a)
	}
}

type errWriter struct{ err error }

func (e errWriter) Write([]byte) (int, error) { return 0, e.err }

func TestWriterErrorsAreSticky(t *testing.T) {
	boom := errors.New("boom")
	w := New("<<A>>", "tok").Writer(errWriter{boom})
	if _, err := w.Write([]byte("abc")); err != boom {
		t.Errorf("Write = %v", err)
	}
	if _, err := w.Write([]byte("abc")); err != boom {
		t.Errorf("second Write = %v", err)
	}
	if err := w.Close(); err != boom {
		t.Errorf("Close = %v", err)
	}
}

func TestWriterCloseDoesNotCloseDestination(t *testing.T) {
	pr, pw := io.Pipe()
	w := New("a", "b").Writer(pw)
	go func() { w.Write([]byte("xa")); w.Close(); pw.Write([]byte("!")); pw.Close() }()
	got, _ := io.ReadAll(pr)
	if string(got) != "xb!" {
		t.Errorf("got %q", got)
	}
}

// FuzzSubstitute checks that streaming gives the same output as Replace on
// the whole input, for any split. pairs holds old/new strings separated by
// '\n'; each byte of chunks gives a write size and a read size.
func FuzzSubstitute(f *testing.F) {
	f.Add([]byte("Authorization: Bearer "+placeholder), placeholder+"\ntok", []byte{5, 13, 1})
	f.Add([]byte("<<<X>>>"), "<<X>>\nT", []byte{1, 1, 1})
	f.Fuzz(func(t *testing.T, data []byte, pairs string, chunks []byte) {
		if len(data) > 8<<10 || len(pairs) > 1<<10 {
			return
		}
		oldnew := strings.Split(pairs, "\n")
		if len(oldnew)%2 == 1 {
			oldnew = append(oldnew, "")
		}
		if len(oldnew) > 16 {
			oldnew = oldnew[:16]
		}
		r := New(oldnew...)
		want, _ := r.Replace(string(data))
		if ref, _ := reference(string(data), oldnew...); ref != want {
			t.Fatalf("Replace = %q, reference = %q", want, ref)
		}
		if out, _ := r.AppendReplace(nil, data); string(out) != want {
			t.Fatalf("AppendReplace = %q, want %q", out, want)
		}
		size := func(i int) int {
			if len(chunks) == 0 {
				return len(data) + 1
			}
			return 1 + int(chunks[i%len(chunks)])
		}

		var buf bytes.Buffer
		w := r.Writer(&buf)
		for i, rest := 0, data; len(rest) > 0; i++ {
			k := min(size(i), len(rest))
			w.Write(rest[:k])
			if len(w.hold) > max(r.MaxPatternLen()-1, 0) {
				t.Fatalf("Writer holds %d bytes", len(w.hold))
			}
			rest = rest[k:]
		}
		w.Close()
		if buf.String() != want {
			t.Fatalf("Writer = %q, want %q", buf.String(), want)
		}

		rd := r.Reader(&sizedReader{data: data, sizes: chunks})
		var got []byte
		p := make([]byte, max(257, len(data)+1))
		for i := 0; ; i++ {
			n, err := rd.Read(p[:size(i+1)])
			got = append(got, p[:n]...)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if string(got) != want {
			t.Fatalf("Reader = %q, want %q", got, want)
		}
	})
}

// sizedReader returns data in chunks of the given sizes (cycled; a zero
// size gives one empty read), returning io.EOF with the last chunk.
type sizedReader struct {
	data   []byte
	sizes  []byte
	i      int
	wasNil bool // last read returned (0, nil)
}

func (s *sizedReader) Read(p []byte) (int, error) {
	k := len(p)
	if len(s.sizes) > 0 {
		k = min(k, int(s.sizes[s.i%len(s.sizes)]))
		s.i++
	}
	if k == 0 && len(p) > 0 {
		if s.wasNil = !s.wasNil; s.wasNil {
			return 0, nil
		}
		k = 1
	}
	n := copy(p[:k], s.data)
	s.data = s.data[n:]
	if len(s.data) == 0 {
		return n, io.EOF
	}
	return n, nil
}

var sink string

func BenchmarkReplaceHeader(b *testing.B) {
	tok := strings.Repeat("eyJhbGciOiJSUzI1NiJ9", 60) // 1.2 KB
	r := New(placeholder, tok)
	h := "Bearer " + placeholder
	b.ReportAllocs()
	for b.Loop() {
		sink, _ = r.Replace(h)
	}
}

func BenchmarkNewAndReplaceHeader(b *testing.B) {
	tok := strings.Repeat("eyJhbGciOiJSUzI1NiJ9", 60)
	h := "Bearer " + placeholder
	b.ReportAllocs()
	for b.Loop() {
		sink, _ = New(placeholder, tok).Replace(h)
	}
}

func BenchmarkReplaceHeaderNoMatch(b *testing.B) {
	r := New(placeholder, strings.Repeat("t", 1200))
	h := "Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.sig"
	b.ReportAllocs()
	for b.Loop() {
		sink, _ = r.Replace(h)
	}
}

func jsonBody(size, placeholders int) []byte {
	var b bytes.Buffer
	item := `{"id":12345,"name":"widget","tags":["a","b","c"],"enabled":true,"score":0.75},`
	at := map[int]bool{}
	for i := range placeholders {
		at[(i+1)*size/(placeholders+1)/len(item)] = true
	}
	b.WriteString(`{"items":[`)
	for i := 0; b.Len() < size-100; i++ {
		if at[i] {
			fmt.Fprintf(&b, `{"token":"%s"},`, placeholder)
		}
		b.WriteString(item)
	}
	b.WriteString(`{}]}`)
	return b.Bytes()
}

func benchReader(b *testing.B, body []byte, oldnew ...string) {
	r := New(oldnew...)
	buf := make([]byte, 32<<10)
	src := bytes.NewReader(body)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		src.Reset(body)
		if _, err := io.CopyBuffer(io.Discard, onlyReader{r.Reader(src)}, buf); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReaderBody(b *testing.B) {
	body := jsonBody(1<<20, 3)
	if n, _ := New(placeholder, "").Count(body); n != 3 {
		b.Fatalf("body has %d placeholders", n)
	}
	benchReader(b, body, placeholder, strings.Repeat("eyJhbGciOiJSUzI1NiJ9", 60))
}

func BenchmarkReaderNoMatch(b *testing.B) {
	benchReader(b, jsonBody(1<<20, 0), placeholder, strings.Repeat("eyJhbGciOiJSUzI1NiJ9", 60))
}

func BenchmarkReaderRedactTwoTokens(b *testing.B) {
	benchReader(b, jsonBody(1<<20, 0), strings.Repeat("eyJhbGciOiJSUzI1NiJ9", 60), placeholder, "refresh-token-value-0123456789", "<<REFRESH>>")
}

func BenchmarkWriterBody(b *testing.B) {
	body := jsonBody(1<<20, 3)
	r := New(placeholder, strings.Repeat("eyJhbGciOiJSUzI1NiJ9", 60))
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		w := r.Writer(io.Discard)
		for rest := body; len(rest) > 0; {
			k := min(len(rest), 32<<10)
			w.Write(rest[:k])
			rest = rest[k:]
		}
		w.Close()
	}
}
