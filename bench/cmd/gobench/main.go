// Command gobench turns the output of `go test -bench . -benchmem` into a
// Markdown table and writes it into docs/PERFORMANCE.md between the markers
// <!-- gobench:begin --> and <!-- gobench:end -->. `make bench` runs it.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/oidcgate/caddy-oidc/bench/benchdoc"
)

const (
	beginMarker = "<!-- gobench:begin -->"
	endMarker   = "<!-- gobench:end -->"
)

func main() {
	in := flag.String("in", "bench/out/gobench.txt", "raw `go test -bench` output")
	doc := flag.String("doc", "docs/PERFORMANCE.md", "document to rewrite; empty: print only")
	command := flag.String("command", "go test -run '^$' -bench . -benchmem ./oidcauth/ ./tokeninject/ ./internal/substitute/",
		"the command that produced -in, quoted in the document")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("gobench: ")

	f, err := os.Open(*in)
	if err != nil {
		log.Fatal(err)
	}
	results, err := parse(f)
	f.Close()
	if err != nil {
		log.Fatal(err)
	}
	if len(results) == 0 {
		log.Fatalf("%s holds no benchmark results", *in)
	}
	body := render(results, *command)
	fmt.Print(body)
	if *doc != "" {
		if err := benchdoc.ReplaceSection(*doc, "Go benchmarks (latest `make bench`)", beginMarker, endMarker, body); err != nil {
			log.Fatal(err)
		}
		log.Printf("rewrote the Go benchmark table in %s", *doc)
	}
}

// result is one benchmark line.
type result struct {
	pkg, name string
	n         int64
	metrics   []metric // in the order go test printed them
}

type metric struct {
	value float64
	unit  string
}

func (r result) get(unit string) (float64, bool) {
	for _, m := range r.metrics {
		if m.unit == unit {
			return m.value, true
		}
	}
	return 0, false
}

var procSuffix = regexp.MustCompile(`-\d+$`)

// parse reads `go test -bench` output: "pkg: ..." lines name the package of
// the benchmark lines that follow, "BenchmarkX-2  N  v unit  v unit ..."
// lines hold the results.
func parse(r io.Reader) ([]result, error) {
	var out []result
	pkg := ""
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimSpace(p)
			continue
		}
		if !strings.HasPrefix(line, "Benchmark") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 4 || len(fields)%2 != 0 {
			continue // a benchmark's own log line, not a result
		}
		n, err := strconv.ParseInt(fields[1], 10, 64)
		if err != nil {
			continue
		}
		res := result{pkg: pkg, name: procSuffix.ReplaceAllString(fields[0], ""), n: n}
		for i := 2; i+1 < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				return nil, fmt.Errorf("bad value %q in %q", fields[i], line)
			}
			res.metrics = append(res.metrics, metric{v, fields[i+1]})
		}
		out = append(out, res)
	}
	return out, sc.Err()
}

func render(results []result, command string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Measured %s by `make bench` on %s, %s.\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), benchdoc.Machine(), runtime.Version())
	b.WriteString("One run of each benchmark at the default `-benchtime` (1s): a quick check,\n")
	b.WriteString("noisier than the repeated measurements in the sections above. Raw output:\n")
	b.WriteString("`bench/out/gobench.txt`.\n\n")
	fmt.Fprintf(&b, "```\n%s\n```\n\n", command)
	b.WriteString("| package | benchmark | ns/op | B/op | allocs/op | other |\n")
	b.WriteString("|---|---|---|---|---|---|\n")
	for _, r := range results {
		var other []string
		for _, m := range r.metrics {
			switch m.unit {
			case "ns/op", "B/op", "allocs/op":
			default:
				other = append(other, fmt.Sprintf("%s %s", number(m.value), m.unit))
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n",
			strings.TrimPrefix(r.pkg, "github.com/oidcgate/caddy-oidc/"), r.name,
			cell(r, "ns/op"), cell(r, "B/op"), cell(r, "allocs/op"), strings.Join(other, ", "))
	}
	return b.String()
}

func cell(r result, unit string) string {
	v, ok := r.get(unit)
	if !ok {
		return ""
	}
	return number(v)
}

// number prints large values as grouped integers and small ones with the
// precision go test gave them.
func number(v float64) string {
	if v >= 1000 || v == float64(int64(v)) {
		return benchdoc.Thousands(int64(v + 0.5))
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}
