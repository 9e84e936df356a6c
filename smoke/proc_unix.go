//go:build unix

package smoke

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
)

// killGroupOnCancel puts the command in its own process group and makes a
// cancelled or timed-out command kill the whole group. Why: a script such as
// `sh -c 'sleep 60; curl ...'` forks children; killing only the shell would
// leave them running, holding the output pipe open and outliving the check.
func killGroupOnCancel(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		if errors.Is(err, syscall.ESRCH) {
			return os.ErrProcessDone
		}
		return err
	}
}
