package nginx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// instanceLocks serialises config writes, `nginx -t` and reloads per nginx
// instance (keyed by MainConfig) within this process. Without it, the driver
// of one service could test or reload while another service's driver has a
// half-finished file on disk, and restore the wrong "previous" file.
var instanceLocks sync.Map // MainConfig -> *sync.Mutex

func lockInstance(mainConfig string) func() {
	m, _ := instanceLocks.LoadOrStore(mainConfig, &sync.Mutex{})
	mu := m.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

// Bootstrap makes the files Render returns exist on disk, then checks the
// whole configuration with `nginx -t`. It writes only files whose content
// changed (each atomically), never overwrites a KeepExisting placeholder, and
// reports whether anything changed. On a failed check it restores every file
// it replaced and returns nginx's output. It does not signal nginx: when
// changed is true and nginx runs, call Reload.
//
// Its output depends only on the set of services and the instance settings,
// so the lb role calls it at start and when the set of services changes,
// never on a pool switch.
func Bootstrap(ctx context.Context, opts Options) (changed bool, err error) {
	o := opts.withDefaults()
	files, err := Render(o)
	if err != nil {
		return false, err
	}
	defer lockInstance(o.MainConfig)()
	dirs := []string{o.ConfigDir}
	if o.Standalone {
		dirs = append(dirs, filepath.Join(o.Prefix, "logs"), o.tempDir(), filepath.Dir(o.MainConfig))
	}
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return false, fmt.Errorf("nginx driver: bootstrap: %w", err)
		}
	}
	var undo []func() error
	rollback := func() {
		for i := len(undo) - 1; i >= 0; i-- {
			if uerr := undo[i](); uerr != nil {
				o.Logger.Error("restore config file", zap.Error(uerr))
			}
		}
	}
	for _, f := range files {
		old, existed, err := readIfExists(f.Path)
		if err != nil {
			rollback()
			return false, fmt.Errorf("nginx driver: bootstrap: %w", err)
		}
		if (existed && f.KeepExisting) || (existed && bytes.Equal(old, f.Data)) {
			continue
		}
		if err := writeAtomic(f.Path, f.Data); err != nil {
			rollback()
			return false, fmt.Errorf("nginx driver: bootstrap: %w", err)
		}
		undo = append(undo, restoreFunc(f.Path, old, existed))
		changed = true
	}
	if !changed {
		return false, nil
	}
	if err := testConfig(ctx, o); err != nil {
		rollback()
		return false, fmt.Errorf("nginx driver: bootstrap: %w", err)
	}
	o.Logger.Info("nginx config written", zap.String("config_dir", o.ConfigDir), zap.Int("services", len(o.Services)))
	return true, nil
}

// Reload checks the configuration with `nginx -t` and signals the running
// master to reload it (`nginx -s reload`). It returns once the signal is
// sent; nginx loads the config asynchronously.
func Reload(ctx context.Context, opts Options) error {
	o := opts.withDefaults()
	defer lockInstance(o.MainConfig)()
	if err := testConfig(ctx, o); err != nil {
		return fmt.Errorf("nginx driver: %w", err)
	}
	return signalReload(ctx, o)
}

// testConfig runs `nginx -t` (argv, never a shell) and returns nginx's output
// in the error when the check fails.
func testConfig(ctx context.Context, o Options) error {
	out, err := exec.CommandContext(ctx, o.Binary, append(o.baseArgs(), "-t", "-q")...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("config check (%s -t -c %s): %w: %s", o.Binary, o.MainConfig, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// signalReload runs `nginx -s reload`.
func signalReload(ctx context.Context, o Options) error {
	out, err := exec.CommandContext(ctx, o.Binary, append(o.baseArgs(), "-s", "reload")...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("nginx driver: reload (%s -s reload): %w: %s", o.Binary, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// readIfExists returns a file's content and whether it exists.
func readIfExists(path string) ([]byte, bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return b, true, nil
}

// restoreFunc returns a function that puts path back as it was: the old
// content, or no file.
func restoreFunc(path string, old []byte, existed bool) func() error {
	return func() error {
		if existed {
			return writeAtomic(path, old)
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
}

// writeAtomic replaces path with data: it writes a temp file in the same
// directory, syncs it and renames it over path, so nginx never reads a half
// written file, even if cyclerd dies mid-write.
func writeAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename this finds nothing
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// nginxDuration renders d in nginx's time syntax.
func nginxDuration(d time.Duration) string {
	if d%time.Second == 0 {
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
}
