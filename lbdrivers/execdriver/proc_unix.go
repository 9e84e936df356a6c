//go:build unix

package execdriver

import (
	"errors"
	"os/exec"
	"syscall"
)

// inOwnGroup makes cmd the leader of a new process group and makes
// cancelling its context SIGKILL the whole group. The kill is sent while
// the leader is still unreaped (os/exec calls Cancel before Wait returns),
// so the group id cannot have been reused by an unrelated process.
func inOwnGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		if errors.Is(err, syscall.ESRCH) {
			return nil
		}
		return err
	}
}

// signalName names the signal that ended the program, or "".
func signalName(e *exec.ExitError) string {
	if ws, ok := e.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return ws.Signal().String()
	}
	return ""
}
