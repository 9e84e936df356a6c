package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// buildTimeout bounds one `go build`; the first build on a cold cache is the slow one.
const buildTimeout = 10 * time.Minute

// builds caches binaries built by BuildBinary for the life of the process.
var builds struct {
	mu  sync.Mutex // guards dir and byPkg; each build then runs under its own Once
	dir string
	// byPkg maps a package path ("./cmd/cyclerd") to its single build.
	byPkg map[string]*build
}

type build struct {
	once sync.Once
	path string
	err  error
}

var moduleRoot struct {
	once sync.Once
	dir  string
	err  error
}

// ModuleRoot returns the directory holding this module's go.mod. It walks up from
// this source file's directory and falls back to `go env GOMOD` (for binaries built
// with -trimpath, run from inside the module).
func ModuleRoot(t T) string {
	t.Helper()
	moduleRoot.once.Do(func() { moduleRoot.dir, moduleRoot.err = findModuleRoot() })
	if moduleRoot.err != nil {
		fatalf(t, "harness: %v", moduleRoot.err)
	}
	return moduleRoot.dir
}

func findModuleRoot() (string, error) {
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		for dir := filepath.Dir(file); ; dir = filepath.Dir(dir) {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				return dir, nil
			}
			if parent := filepath.Dir(dir); parent == dir {
				break
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("find module root: go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("find module root: not inside the cycler module; run from the repository checkout")
	}
	return filepath.Dir(gomod), nil
}

// binDirPrefix starts the name of BuildBinary's directory, which goes on with the
// owning process's pid: cycler-harness-bin-<pid>-<random>.
const binDirPrefix = "cycler-harness-bin-"

// sweepStaleBinDirs removes binary directories left by harness processes that
// have exited without RemoveBuiltBinaries (a test package without a TestMain, a
// killed run), so such leaks stay bounded. Errors are ignored: this is tidying.
func sweepStaleBinDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), binDirPrefix+"*"))
	for _, d := range dirs {
		rest := strings.TrimPrefix(filepath.Base(d), binDirPrefix)
		pidStr, _, ok := strings.Cut(rest, "-")
		if !ok {
			continue
		}
		if pid, err := strconv.Atoi(pidStr); err == nil && pid != os.Getpid() && !Alive(pid) {
			_ = os.RemoveAll(d)
		}
	}
}

// BuildBinary builds the module's main package pkg (a path relative to the module
// root, such as "./cmd/cyclerd") and returns the binary's path. Each package is
// built once per process, into a directory shared by all callers; call
// RemoveBuiltBinaries at the end of the process (TestMain, the lab) to delete it.
// (A directory left by a process that did not is removed by the next harness
// process that builds.)
// A failed build is reported with the compiler's output, and every later call for
// the same package fails the same way without rebuilding.
func BuildBinary(t T, pkg string) string {
	t.Helper()
	root := ModuleRoot(t)
	builds.mu.Lock()
	if builds.byPkg == nil {
		builds.byPkg = make(map[string]*build)
	}
	if builds.dir == "" {
		sweepStaleBinDirs()
		dir, err := os.MkdirTemp("", binDirPrefix+strconv.Itoa(os.Getpid())+"-")
		if err != nil {
			builds.mu.Unlock()
			fatalf(t, "harness: make binary dir: %v", err)
		}
		builds.dir = dir
	}
	dir := builds.dir
	b := builds.byPkg[pkg]
	if b == nil {
		b = &build{}
		builds.byPkg[pkg] = b
	}
	builds.mu.Unlock()

	b.once.Do(func() { b.path, b.err = goBuild(root, dir, pkg) })
	if b.err != nil {
		fatalf(t, "harness: %v", b.err)
	}
	return b.path
}

// RemoveBuiltBinaries deletes the binaries BuildBinary made. Later BuildBinary calls
// build again into a new directory.
func RemoveBuiltBinaries() error {
	builds.mu.Lock()
	defer builds.mu.Unlock()
	dir := builds.dir
	builds.dir, builds.byPkg = "", nil
	if dir == "" {
		return nil
	}
	return os.RemoveAll(dir)
}

func goBuild(root, dir, pkg string) (string, error) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("build %s: the go command is not on PATH: %w", pkg, err)
	}
	out := filepath.Join(dir, filepath.Base(pkg))
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, gobin, "build", "-o", out, pkg)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s in %s: %w\n%s", pkg, root, err, b)
	}
	return out, nil
}
