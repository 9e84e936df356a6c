package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
)

// stateFormat is the version of agent-state.json this agent writes.
const stateFormat = 1

// maxStateBytes bounds agent-state.json; it holds a few dozen records.
const maxStateBytes = 4 << 20

// state is what the agent persists in <data_dir>/agent-state.json, so that
// after its own restart it knows which releases it unpacked, what is
// hidden, the last install, and which process runs the app.
type state struct {
	Format int `json:"format"`
	// Current and Previous are release directory names ("" for none).
	// `current` on disk is the truth for Current: the state is saved
	// right after the link is switched, and after a crash in between the
	// agent follows the link when it starts (reconcileDisk).
	Current  string `json:"current,omitempty"`
	Previous string `json:"previous,omitempty"`
	// Releases records every release the agent unpacked and still keeps.
	Releases    []Release   `json:"releases"`
	Maintenance Maintenance `json:"maintenance"`
	LastInstall *Install    `json:"last_install,omitempty"`
	// App is the supervised process, for adoption by the next agent run.
	App *appRecord `json:"app,omitempty"`
}

// appRecord identifies a supervised app process well enough to adopt it
// after an agent restart without mistaking a recycled pid for it.
type appRecord struct {
	PID int `json:"pid"`
	// StartTicks is field 22 of /proc/<pid>/stat: the process start time
	// in clock ticks since boot. A pid reused by another process has a
	// different start time.
	StartTicks uint64 `json:"start_ticks"`
	// Exe is /proc/<pid>/exe when it started.
	Exe string `json:"exe"`
	// Release is the release directory it was started from.
	Release string `json:"release"`
}

// release returns the record of release dir, or nil.
func (s *state) release(dir string) *Release {
	if dir == "" {
		return nil
	}
	for i := range s.Releases {
		if s.Releases[i].Dir == dir {
			r := s.Releases[i]
			return &r
		}
	}
	return nil
}

// addRelease records r, replacing an older record of the same directory.
func (s *state) addRelease(r Release) {
	s.dropRelease(r.Dir)
	s.Releases = append(s.Releases, r)
}

// dropRelease forgets release dir.
func (s *state) dropRelease(dir string) {
	s.Releases = slices.DeleteFunc(s.Releases, func(r Release) bool { return r.Dir == dir })
}

// clone returns a deep copy, for readers outside the lock.
func (s *state) clone() state {
	c := *s
	c.Releases = slices.Clone(s.Releases)
	if s.LastInstall != nil {
		li := *s.LastInstall
		c.LastInstall = &li
	}
	if s.App != nil {
		a := *s.App
		c.App = &a
	}
	return c
}

// loadState reads the state file at path. A missing file is a fresh agent.
func loadState(path string) (state, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return state{Format: stateFormat}, nil
	}
	if err != nil {
		return state{}, fmt.Errorf("agent state: read %s: %w", path, err)
	}
	if len(b) > maxStateBytes {
		return state{}, fmt.Errorf("agent state: %s is %d bytes, more than the %d an agent writes; move it away to start fresh", path, len(b), maxStateBytes)
	}
	var s state
	if err := json.Unmarshal(b, &s); err != nil {
		return state{}, fmt.Errorf("agent state: %s is not valid JSON (%v); move it away to start fresh: "+
			"the agent then finds `current` and the releases on disk again, but forgets the hidden generation", path, err)
	}
	if s.Format != stateFormat {
		return state{}, fmt.Errorf("agent state: %s has format %d; this agent reads format %d", path, s.Format, stateFormat)
	}
	return s, nil
}

// saveState writes s to path atomically: a temp file in the same
// directory, synced, renamed over path, and the directory synced, so a
// crash leaves either the old or the new state, never a torn one.
func saveState(path string, s state) error {
	s.Format = stateFormat
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("agent state: encode: %w", err)
	}
	return writeFileAtomic(path, append(b, '\n'), 0o600)
}

// writeFileAtomic replaces path with data; see saveState.
func writeFileAtomic(path string, data []byte, perm fs.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op once renamed
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: sync: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return syncDir(dir)
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
