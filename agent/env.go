package agent

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"

	"github.com/cyclerhq/cycler/pkgfile"
)

// passEnv are the only variables of the agent's own environment a package's
// commands inherit. The agent's environment may hold secrets (such as
// CONSUL_HTTP_TOKEN) that an app has no business seeing.
var passEnv = []string{"PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR"}

// vars are the CYCLER_* variables for a release (see pkgfile.Variables).
func (a *Agent) vars(rel Release) map[string]string {
	return map[string]string{
		pkgfile.EnvAddr:       a.appAddr(),
		pkgfile.EnvHost:       a.cfg.Address,
		pkgfile.EnvPort:       strconv.Itoa(a.cfg.Port),
		pkgfile.EnvVersion:    rel.Version,
		pkgfile.EnvInstance:   a.cfg.Instance,
		pkgfile.EnvPool:       a.cfg.Pool,
		pkgfile.EnvReleaseDir: a.layout.release(rel.Dir),
	}
}

// env is the environment of a package's commands: passEnv from the
// agent's environment, then the manifest's start.env (expanded), then the
// CYCLER_* variables, which the manifest cannot override.
func (a *Agent) env(rel Release, m pkgfile.Manifest) []string {
	vars := a.vars(rel)
	var out []string
	for _, k := range passEnv {
		if v, ok := os.LookupEnv(k); ok {
			out = append(out, k+"="+v)
		}
	}
	if m.Start != nil {
		keys := make([]string, 0, len(m.Start.Env))
		for k := range m.Start.Env {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			out = append(out, k+"="+pkgfile.ExpandString(m.Start.Env[k], vars))
		}
	}
	for _, k := range pkgfile.Variables() {
		out = append(out, k+"="+vars[k])
	}
	return out
}

// command expands argv and resolves its program: a path with a "/" is
// relative to the release directory, a bare name is looked up in PATH.
func (a *Agent) command(rel Release, argv []string) ([]string, error) {
	out := pkgfile.ExpandArgs(argv, a.vars(rel))
	if len(out) == 0 || out[0] == "" {
		return nil, fmt.Errorf("release %s: empty command", rel.Dir)
	}
	switch prog := out[0]; {
	case filepath.IsAbs(prog):
	case filepath.Base(prog) != prog:
		out[0] = filepath.Join(a.layout.release(rel.Dir), prog)
	default:
		p, err := exec.LookPath(prog)
		if err != nil {
			return nil, fmt.Errorf("release %s: program %q is not on the agent's PATH; write ./%s for a program inside the package", rel.Dir, prog, prog)
		}
		out[0] = p
	}
	return out, nil
}

// startSpec is how the manifest's start command runs for rel.
func (a *Agent) startSpec(rel Release, m pkgfile.Manifest) (startSpec, error) {
	argv, err := a.command(rel, m.Start.Command)
	if err != nil {
		return startSpec{}, err
	}
	return startSpec{argv: argv, env: a.env(rel, m), dir: a.layout.release(rel.Dir), release: rel.Dir}, nil
}
