package command

import (
	"os/exec"
	"syscall"
)

// dieWithTest makes the server exit if the test binary dies without
// stopping it (a killed fuzz worker, a timeout).
func dieWithTest(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
