//go:build !unix

package execdriver

import "os/exec"

// inOwnGroup leaves cmd as it is: process groups are a Unix notion. On
// other systems the timeout kills the program but not its children.
func inOwnGroup(*exec.Cmd) {}

// signalName names the signal that ended the program; there are none here.
func signalName(*exec.ExitError) string { return "" }
