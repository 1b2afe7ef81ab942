package redistest

import "syscall"

// sysProcAttr kills redis-server if the test binary dies (timeout panic,
// SIGKILL), so crashed runs do not leave servers behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
