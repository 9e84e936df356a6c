package harness

import (
	"os"
	"os/exec"
	"path/filepath"
)

// systemBinary returns the path of a system program: $env if set, else name on the
// PATH, else name in /usr/sbin or /usr/bin (root's PATH has /usr/sbin, a normal
// user's often does not). It calls t.Fatalf, telling the user to run `make deps`,
// when the program is nowhere.
func systemBinary(t T, env, name string) string {
	t.Helper()
	if p := os.Getenv(env); p != "" {
		if _, err := os.Stat(p); err != nil {
			fatalf(t, "harness: $%s=%q: %v; point it at the %s binary or unset it", env, p, err, name)
		}
		return p
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/usr/bin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	fatalf(t, "harness: %s is not installed (not on PATH, not in /usr/sbin or /usr/bin); "+
		"run `make deps` (scripts/install-deps.sh) or set $%s", name, env)
	return ""
}
