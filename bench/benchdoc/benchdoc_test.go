package benchdoc

import "testing"

func TestReplaceSection(t *testing.T) {
	const b, e = "<!-- x:begin -->", "<!-- x:end -->"
	got, err := replaceSection("# Doc\n\ntext\n", "New", b, e, "one")
	if err != nil {
		t.Fatal(err)
	}
	want := "# Doc\n\ntext\n\n## New\n\n" + b + "\none\n" + e + "\n"
	if got != want {
		t.Fatalf("appended:\n%q\nwant\n%q", got, want)
	}
	got, err = replaceSection(got+"\n## After\n", "New", b, e, "two\nlines\n")
	if err != nil {
		t.Fatal(err)
	}
	want = "# Doc\n\ntext\n\n## New\n\n" + b + "\ntwo\nlines\n" + e + "\n\n## After\n"
	if got != want {
		t.Fatalf("replaced:\n%q\nwant\n%q", got, want)
	}
	if _, err := replaceSection("x "+b+" y", "New", b, e, "z"); err == nil {
		t.Fatal("a begin marker without an end marker was accepted")
	}
}

func TestThousands(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -12345: "-12,345"} {
		if got := Thousands(n); got != want {
			t.Errorf("Thousands(%d) = %q, want %q", n, got, want)
		}
	}
}
