package substitute

import (
	"errors"
	"io"
)

// readBufSize is the size of the Reader's input buffer (grown to twice the
// longest pattern if that is larger).
const readBufSize = 32 << 10

// Reader returns a reader that streams src with replacements applied. Its
// memory use is bounded by its buffer (32 KiB, or twice the longest pattern
// if larger) whatever the input size. Any error from src, io.EOF included,
// ends the input: the data read so far is processed and emitted, then the
// error is returned. A Replacer without patterns returns src itself.
func (r *Replacer) Reader(src io.Reader) io.Reader {
	if r.empty() {
		return src
	}
	rd := &reader{src: src}
	rd.m = r.newMatcher(rd.slots[:])
	return rd
}

type reader struct {
	src   io.Reader
	m     matcher
	slots [4]int
	buf   []byte // allocated on first Read
	pos   int    // buf[pos:end] is input not yet decided on
	end   int
	lit   []byte // pending literal output (a slice of buf)
	rep   string // pending replacement output, emitted after lit
	err   error  // error from src; set once the input has ended
}

func (rd *reader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n := 0
	for {
		if len(rd.lit) > 0 {
			c := copy(p[n:], rd.lit)
			rd.lit = rd.lit[c:]
			n += c
			if n == len(p) {
				return n, nil
			}
		}
		if len(rd.rep) > 0 {
			c := copy(p[n:], rd.rep)
			rd.rep = rd.rep[c:]
			n += c
			if n == len(p) {
				return n, nil
			}
		}
		if rd.pos < rd.end {
			s := bytesView(rd.buf[:rd.end])
			at, idx := rd.m.step(s, rd.pos, rd.err != nil)
			if idx >= 0 {
				rd.lit = rd.buf[rd.pos:at]
				rd.rep = rd.m.pairs[idx].new
				rd.pos = at + len(rd.m.pairs[idx].old)
				continue
			}
			if at > rd.pos {
				rd.lit = rd.buf[rd.pos:at]
				rd.pos = at
				continue
			}
			// Everything left is a possible pattern prefix.
		}
		if n > 0 {
			return n, nil // don't block on src while holding output
		}
		if rd.err != nil {
			return 0, rd.err
		}
		rd.fill()
	}
}

// fill reads more input after moving the held-back bytes to the front of
// the buffer. It sets rd.err when the input ends.
func (rd *reader) fill() {
	if rd.buf == nil {
		rd.buf = make([]byte, max(readBufSize, 2*rd.m.maxLen))
	}
	rd.end = copy(rd.buf, rd.buf[rd.pos:rd.end])
	rd.pos = 0
	rd.m.reset()
	for range 100 {
		n, err := rd.src.Read(rd.buf[rd.end:])
		if n < 0 || n > len(rd.buf)-rd.end {
			rd.err = errors.New("substitute: source returned invalid count from Read")
			return
		}
		rd.end += n
		if err != nil {
			rd.err = err
			return
		}
		if n > 0 {
			return
		}
	}
	rd.err = io.ErrNoProgress
}

// writeOutMax bounds the Writer's output coalescing buffer; larger pieces go
// straight to the destination.
const writeOutMax = 4 << 10

// errClosed is returned by Write after Close.
var errClosed = errors.New("substitute: write after close")

// Writer streams writes to an underlying writer with replacements applied.
// After each Write, everything except a possible pattern prefix at the end
// of the data written so far (at most MaxPatternLen()-1 bytes) has been
// written to the destination. Close writes the rest. A Writer is not safe for
// concurrent use.
type Writer struct {
	dst    io.Writer
	m      matcher
	slots  [4]int
	hold   []byte // held-back input; capacity 2*maxLen once allocated
	out    []byte // small output pieces gathered into one dst.Write
	err    error  // sticky error
	closed bool
}

// Writer returns a Writer that writes to dst with replacements applied.
func (r *Replacer) Writer(dst io.Writer) *Writer {
	w := &Writer{dst: dst}
	if !r.empty() {
		w.m = r.newMatcher(w.slots[:])
	}
	return w
}

// Write implements io.Writer. It returns len(p) unless the destination
// returned an error, which is then also returned by later calls.
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.closed {
		return 0, errClosed
	}
	if len(w.m.pairs) == 0 {
		n, err := w.dst.Write(p)
		w.err = err
		return n, err
	}
	off := 0 // how much of p has been decided on
	if len(w.hold) > 0 {
		// Combine the held-back bytes with enough of p to decide on them.
		h := len(w.hold)
		k := min(len(p), w.m.maxLen)
		w.hold = append(w.hold, p[:k]...)
		at := w.run(w.hold, 0, false)
		if k == len(p) {
			w.keep(w.hold, at)
			return w.result(len(p))
		}
		// With maxLen bytes of p appended, the held-back tail (shorter
		// than maxLen) if any starts inside p, so at > h.
		off = at - h
		w.hold = w.hold[:0]
	}
	w.keep(p, w.run(p, off, false))
	return w.result(len(p))
}

func (w *Writer) result(n int) (int, error) {
	if err := w.flushOut(); err != nil {
		return 0, err
	}
	return n, nil
}

// run emits the output for b[pos:] and returns where the held-back tail
// starts (len(b) if there is none; always so when final).
func (w *Writer) run(b []byte, pos int, final bool) int {
	s := bytesView(b)
	w.m.reset()
	for {
		at, idx := w.m.step(s, pos, final)
		if at > pos {
			w.emit(b[pos:at])
		}
		if idx < 0 || w.err != nil {
			return at
		}
		w.emitString(w.m.pairs[idx].new)
		pos = at + len(w.m.pairs[idx].old)
	}
}

// keep stores b[at:] as the held-back tail (b may alias w.hold).
func (w *Writer) keep(b []byte, at int) {
	tail := b[at:]
	if len(tail) == 0 {
		w.hold = w.hold[:0]
		return
	}
	if w.hold == nil {
		w.hold = make([]byte, 0, 2*w.m.maxLen)
	}
	w.hold = w.hold[:copy(w.hold[:len(tail)], tail)]
}

func (w *Writer) emit(b []byte) {
	if w.err != nil {
		return
	}
	if len(w.out)+len(b) <= writeOutMax {
		w.out = append(w.out, b...)
		return
	}
	if w.flushOut() != nil {
		return
	}
	if len(b) >= writeOutMax/2 {
		_, w.err = w.dst.Write(b)
		return
	}
	w.out = append(w.out, b...)
}

func (w *Writer) emitString(s string) {
	if w.err != nil {
		return
	}
	if len(w.out)+len(s) <= writeOutMax {
		w.out = append(w.out, s...)
		return
	}
	if w.flushOut() != nil {
		return
	}
	if len(s) >= writeOutMax/2 {
		_, w.err = io.WriteString(w.dst, s)
		return
	}
	w.out = append(w.out, s...)
}

func (w *Writer) flushOut() error {
	if w.err == nil && len(w.out) > 0 {
		_, w.err = w.dst.Write(w.out)
	}
	w.out = w.out[:0]
	return w.err
}

// Flush writes everything that cannot be the start of a pattern to the
// destination. Since Write already does so before returning, Flush only
// reports a pending error; it does not flush the destination itself.
func (w *Writer) Flush() error {
	return w.flushOut()
}

// Close writes what the Writer still holds back (a possible pattern prefix
// at the end of the input, now known not to match). It does not close the
// destination. Writes after Close fail.
func (w *Writer) Close() error {
	if w.closed {
		return w.err
	}
	w.closed = true
	if w.err == nil && len(w.hold) > 0 {
		w.run(w.hold, 0, true)
	}
	w.hold = w.hold[:0]
	return w.flushOut()
}
