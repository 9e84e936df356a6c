package harness

import (
	"context"
	"errors"
	"os/exec"
	"syscall"
	"time"
)

// commandWaitDelay is how long a Command whose context ended gets to exit
// after SIGTERM before its process group is killed.
const commandWaitDelay = 10 * time.Second

// Command is exec.CommandContext for a short-lived child such as cyclerctl,
// run in its own process group, as harness processes are: when ctx ends its
// whole group gets SIGTERM (then SIGKILL after 10s), and the kernel sends it
// SIGTERM if this process dies first. A terminal's Ctrl-C therefore reaches
// only the caller, which decides what to stop.
func Command(ctx context.Context, path string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.SysProcAttr = sysProcAttr()
	cmd.Cancel = func() error {
		err := syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		if errors.Is(err, syscall.ESRCH) {
			return nil
		}
		return err
	}
	cmd.WaitDelay = commandWaitDelay
	return cmd
}
