package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// cpuSplit keeps the front end under test apart from what drives it: the
// front end's processes (Caddy, oauth2-proxy, redis-server) run on the
// upper half of the CPUs, this program (the upstream, the provider) and wrk
// on the lower half. Sharing cores, the load generator's and the upstream's
// costs are added to every front end's and dilute the differences measured
// (a front end twice as costly then serves far more than half as many
// requests); apart, each front end's req/s is what its own cores serve.
type cpuSplit struct {
	front, driver []int
}

// newCPUSplit halves the CPUs this program may use; ok is false with fewer
// than two.
func newCPUSplit() (cpuSplit, bool, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return cpuSplit{}, false, fmt.Errorf("reading CPU affinity: %w", err)
	}
	var cpus []int
	for i := range runtime.NumCPU() * 4 {
		if set.IsSet(i) {
			cpus = append(cpus, i)
		}
	}
	if len(cpus) < 2 {
		return cpuSplit{}, false, nil
	}
	half := len(cpus) / 2
	return cpuSplit{driver: cpus[:half], front: cpus[half:]}, true, nil
}

// pinSelf moves every thread of this program to the driver CPUs; threads
// created later, and child processes such as wrk, inherit the affinity.
func (c cpuSplit) pinSelf() error {
	var set unix.CPUSet
	for _, cpu := range c.driver {
		set.Set(cpu)
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, &set); err != nil {
			return fmt.Errorf("pinning thread %d: %w", tid, err)
		}
	}
	return nil
}

// frontCommand wraps a front-end process's command line in taskset, which
// sets the affinity and then executes the command in the same process,
// before the process has started any thread.
func (c cpuSplit) frontCommand(bin string, args []string) (string, []string) {
	return "taskset", append([]string{"--cpu-list", cpuList(c.front), bin}, args...)
}

func cpuList(cpus []int) string {
	s := make([]string, len(cpus))
	for i, c := range cpus {
		s[i] = strconv.Itoa(c)
	}
	return strings.Join(s, ",")
}
