package examples_test

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

// runProcess starts cmd with its output collected, and stops it (interrupt,
// then kill after grace) when the test ends, printing the output if the
// test failed. The returned channel is closed when the process exits.
func runProcess(t *testing.T, name string, cmd *exec.Cmd, grace time.Duration) (*lockedBuffer, <-chan struct{}) {
	t.Helper()
	logs := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(grace):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", name, logs.String())
		}
	})
	return logs, exited
}
