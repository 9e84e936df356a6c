//go:build !unix

package smoke

import "os/exec"

// killGroupOnCancel keeps exec's default on systems without process
// groups: a cancelled or timed-out command's process is killed.
func killGroupOnCancel(*exec.Cmd) {}
