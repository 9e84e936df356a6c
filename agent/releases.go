package agent

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/cyclerhq/cycler/pkgfile"
)

// Layout of the data directory:
//
//	<data_dir>/agent-state.json   the agent's state (see state)
//	<data_dir>/current            symlink to releases/<dir>, switched atomically
//	<data_dir>/releases/<dir>     one unpacked package per directory
//	<data_dir>/staging/           downloads and unpacks in progress
//	<data_dir>/app.log            the supervised app's stdout and stderr, and hook output
const (
	stateFile   = "agent-state.json"
	currentLink = "current"
	releasesDir = "releases"
	stagingDir  = "staging"
	appLogFile  = "app.log"
)

// digestRE is a package digest as servers name blobs.
var digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// releaseNameRE is a release directory name the agent accepts in requests:
// a package version, '-', and 12 hex digits.
var releaseNameRE = regexp.MustCompile(`^[A-Za-z0-9._+-]{1,64}-[0-9a-f]{12}$`)

// ErrBadRequest marks a request the agent refuses as malformed: a digest
// or release name of the wrong shape, or a release that does not exist.
var ErrBadRequest = errors.New("bad request")

// checkDigest returns an error naming d unless it is "sha256:<64 hex>".
func checkDigest(d string) error {
	if !digestRE.MatchString(d) {
		return fmt.Errorf("%w: digest %q is not a package digest; use \"sha256:\" and 64 lower-case hex digits, as `cyclerctl package list --json` shows", ErrBadRequest, d)
	}
	return nil
}

// shortDigest is the 12 hex digits of d used in release directory names.
func shortDigest(d string) string {
	return strings.TrimPrefix(d, "sha256:")[:12]
}

// versionOf is the version part of a release directory name.
func versionOf(dir string) string {
	if i := strings.LastIndexByte(dir, '-'); i > 0 {
		return dir[:i]
	}
	return dir
}

// releaseDir is the directory name of a package version with digest d.
func releaseDir(version, digest string) string {
	return version + "-" + shortDigest(digest)
}

// layout resolves the paths in a data directory.
type layout struct{ root string }

func (l layout) state() string             { return filepath.Join(l.root, stateFile) }
func (l layout) current() string           { return filepath.Join(l.root, currentLink) }
func (l layout) releases() string          { return filepath.Join(l.root, releasesDir) }
func (l layout) staging() string           { return filepath.Join(l.root, stagingDir) }
func (l layout) appLog() string            { return filepath.Join(l.root, appLogFile) }
func (l layout) release(dir string) string { return filepath.Join(l.root, releasesDir, dir) }

// prepare creates the directories and clears leftovers of an install that
// a crash interrupted (staging only; releases are complete or absent).
func (l layout) prepare() error {
	for _, d := range []string{l.root, l.releases()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("agent: data dir: %w", err)
		}
	}
	if err := os.RemoveAll(l.staging()); err != nil {
		return fmt.Errorf("agent: clear %s: %w", l.staging(), err)
	}
	if err := os.MkdirAll(l.staging(), 0o700); err != nil {
		return fmt.Errorf("agent: data dir: %w", err)
	}
	return nil
}

// readCurrent returns the release directory `current` points at, or ""
// when there is no current release.
func (l layout) readCurrent() (string, error) {
	target, err := os.Readlink(l.current())
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("agent: read %s: %w", l.current(), err)
	}
	dir, ok := strings.CutPrefix(target, releasesDir+string(filepath.Separator))
	if !ok || dir == "" || strings.ContainsRune(dir, filepath.Separator) {
		return "", fmt.Errorf("agent: %s points at %q, not at a directory under %s/; fix or remove the link", l.current(), target, releasesDir)
	}
	return dir, nil
}

// switchCurrent points `current` at release dir atomically: a new symlink
// under a temporary name is renamed over the old one, so at every instant
// `current` names either the old or the new release.
func (l layout) switchCurrent(dir string) error {
	tmp := filepath.Join(l.root, ".current-"+randomHex(6))
	if err := os.Symlink(filepath.Join(releasesDir, dir), tmp); err != nil {
		return fmt.Errorf("agent: switch current to %s: %w", dir, err)
	}
	if err := os.Rename(tmp, l.current()); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("agent: switch current to %s: %w", dir, err)
	}
	return syncDir(l.root)
}

// clearCurrent removes `current` (a failed first install leaves none).
func (l layout) clearCurrent() error {
	if err := os.Remove(l.current()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("agent: remove %s: %w", l.current(), err)
	}
	return syncDir(l.root)
}

// listReleases returns the release directory names on disk, sorted.
// Names starting with '.' are not releases.
func (l layout) listReleases() ([]string, error) {
	ents, err := os.ReadDir(l.releases())
	if err != nil {
		return nil, fmt.Errorf("agent: list releases: %w", err)
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out, nil
}

// findRelease returns the directory on disk that holds digest, or "".
func (l layout) findRelease(digest string) (string, error) {
	dirs, err := l.listReleases()
	if err != nil {
		return "", err
	}
	suffix := "-" + shortDigest(digest)
	for _, d := range dirs {
		if strings.HasSuffix(d, suffix) {
			return d, nil
		}
	}
	return "", nil
}

// manifestNames are the manifest files a package may carry at its root,
// in the order they are looked for.
var manifestNames = []string{pkgfile.ManifestHCL, pkgfile.ManifestJSON}

// readManifest parses the manifest of an unpacked release.
func (l layout) readManifest(dir string) (pkgfile.Manifest, error) {
	for _, name := range manifestNames {
		f, err := os.Open(filepath.Join(l.release(dir), name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return pkgfile.Manifest{}, fmt.Errorf("release %s: %w", dir, err)
		}
		b, err := io.ReadAll(io.LimitReader(f, pkgfile.DefaultLimits().MaxManifestBytes+1))
		f.Close()
		if err != nil {
			return pkgfile.Manifest{}, fmt.Errorf("release %s: read %s: %w", dir, name, err)
		}
		m, err := pkgfile.ParseManifest(name, b)
		if err != nil {
			return pkgfile.Manifest{}, fmt.Errorf("release %s: %w", dir, err)
		}
		return m, nil
	}
	return pkgfile.Manifest{}, fmt.Errorf("release %s holds no cycler.hcl or cycler.json; it was not unpacked by this agent", dir)
}

// randomHex returns n random bytes in hex, for temporary names.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on Linux
	return hex.EncodeToString(b)
}

// discard deletes a release the agent unpacked for an install that failed.
// It never deletes the current release.
func (a *Agent) discard(rel Release) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.st.Current == rel.Dir {
		return
	}
	if err := os.RemoveAll(a.layout.release(rel.Dir)); err != nil {
		a.log.Error("removing a failed release", zap.String("release", rel.Dir), zap.Error(err))
		return
	}
	a.st.dropRelease(rel.Dir)
	if err := a.saveLocked(); err != nil {
		a.log.Error("saving the agent state", zap.Error(err))
	}
}

// prune deletes the oldest releases beyond KeepReleases (counting the
// previous release), never the current or the previous one. Directories
// the agent has no record of are left alone.
func (a *Agent) prune() {
	a.mu.Lock()
	budget := a.cfg.KeepReleases
	if a.st.Previous != "" {
		budget--
	}
	var cands []Release
	for _, r := range a.st.Releases {
		if r.Dir != a.st.Current && r.Dir != a.st.Previous {
			cands = append(cands, r)
		}
	}
	a.mu.Unlock()
	sort.SliceStable(cands, func(i, j int) bool { return cands[i].InstalledAt.After(cands[j].InstalledAt) })
	if len(cands) <= budget {
		return
	}
	for _, r := range cands[max(budget, 0):] {
		// Jobs run one at a time, so nothing switches to r meanwhile.
		if err := os.RemoveAll(a.layout.release(r.Dir)); err != nil {
			a.log.Error("pruning a release", zap.String("release", r.Dir), zap.Error(err))
			continue
		}
		a.mu.Lock()
		a.st.dropRelease(r.Dir)
		a.mu.Unlock()
		a.log.Info("release pruned", zap.String("release", r.Dir), zap.String("version", r.Version))
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.saveLocked(); err != nil {
		a.log.Error("saving the agent state", zap.Error(err))
	}
}

// modTime is a directory's modification time, or the zero time.
func modTime(path string) time.Time {
	fi, err := os.Stat(path)
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime().UTC()
}
