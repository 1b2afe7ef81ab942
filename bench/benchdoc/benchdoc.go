// Package benchdoc holds what the benchmark commands under bench/cmd share:
// rewriting a marked section of docs/PERFORMANCE.md, and describing the
// machine a measurement was taken on.
package benchdoc

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// ReplaceSection rewrites the text between the lines begin and end (HTML
// comment markers) in the file at path with body. When the markers are
// missing, a new section "## heading" holding them is appended to the file.
func ReplaceSection(path, heading, begin, end, body string) error {
	old, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	out, err := replaceSection(string(old), heading, begin, end, body)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(out), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func replaceSection(doc, heading, begin, end, body string) (string, error) {
	body = strings.TrimRight(body, "\n") + "\n"
	i := strings.Index(doc, begin)
	if i < 0 {
		doc = strings.TrimRight(doc, "\n") + "\n\n## " + heading + "\n\n" + begin + "\n" + end + "\n"
		i = strings.Index(doc, begin)
	}
	j := strings.Index(doc[i:], end)
	if j < 0 {
		return "", fmt.Errorf("marker %q without %q", begin, end)
	}
	j += i
	return doc[:i] + begin + "\n" + body + doc[j:], nil
}

// Machine describes the computer the benchmarks run on, e.g. "2 cores (AMD
// EPYC), 23.5 GiB RAM, Linux 6.1.0 amd64".
func Machine() string {
	cpu := "unknown CPU"
	if v := procField("/proc/cpuinfo", "model name"); v != "" {
		cpu = v
	}
	mem := "unknown RAM"
	if v := procField("/proc/meminfo", "MemTotal"); v != "" {
		if kb, err := strconv.ParseFloat(strings.TrimSuffix(v, " kB"), 64); err == nil {
			mem = fmt.Sprintf("%.1f GiB RAM", kb/(1<<20))
		}
	}
	kernel := runtime.GOOS
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = "Linux " + strings.TrimSpace(string(b))
	}
	return fmt.Sprintf("%d cores (%s), %s, %s %s", runtime.NumCPU(), cpu, mem, kernel, runtime.GOARCH)
}

// procField returns the value of the first "name : value" line of a /proc
// file, or "".
func procField(path, name string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == name {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// Thousands formats n with "," between groups of three digits.
func Thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
