package main

import (
	"slices"
	"testing"
)

// TestCPUSplitHalvesTheAllowedCPUs: every CPU the program may use goes to
// exactly one side, both sides get some, and the front end is wrapped in
// taskset with its own CPUs.
func TestCPUSplitHalvesTheAllowedCPUs(t *testing.T) {
	s, ok, err := newCPUSplit()
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		t.Skip("fewer than 2 CPUs")
	}
	if len(s.front) == 0 || len(s.driver) == 0 || len(s.front) < len(s.driver) {
		t.Fatalf("split %v / %v", s.driver, s.front)
	}
	for _, c := range s.front {
		if slices.Contains(s.driver, c) {
			t.Fatalf("CPU %d on both sides", c)
		}
	}
	bin, args := s.frontCommand("caddy", []string{"run"})
	if want := []string{"--cpu-list", cpuList(s.front), "caddy", "run"}; bin != "taskset" || !slices.Equal(args, want) {
		t.Fatalf("front command %s %q, want taskset %q", bin, args, want)
	}
}
