package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cyclerhq/cycler/pkgfile"
	"github.com/cyclerhq/cycler/pool"
)

func TestInstallSwitchesAndRollsBack(t *testing.T) {
	e := newTestEnv(t)
	a, _ := e.start()
	ctx := context.Background()
	v1 := e.src.add(testPackage(t, "1.0.0", "serve", pkgfile.Hooks{PreSwitch: [][]string{hook(t, "hook")}}))
	v2 := e.src.add(testPackage(t, "2.0.0", "serve", pkgfile.Hooks{PostSwitch: [][]string{hook(t, "hook")}}))
	bad := e.src.add(testPackage(t, "3.0.0", "fail-health", pkgfile.Hooks{}))

	res := mustInstall(t, a, v1, OutcomeInstalled)
	if res.Current == nil || res.Current.Dir != "1.0.0-"+shortDigest(v1) || res.Current.Digest != v1 {
		t.Fatalf("current after v1 = %+v", res.Current)
	}
	e.wantServing("1.0.0")
	wantLink(t, e.dir, res.Current.Dir)
	reg, reason, hidden := e.reg.service("web-blue-1")
	if reg == nil || reg.Name != "web" || reg.Port != e.port || reg.Meta[pool.MetaPool] != "blue" || reg.Meta[pool.MetaVersion] != "1.0.0" ||
		!slices.Equal(reg.Tags, []string{"cycler-blue"}) || reg.Check == nil || !strings.HasSuffix(reg.Check.HTTP, "/health") || reg.Check.Interval != "1s" {
		t.Fatalf("registration after v1 = %+v (check %+v)", reg, reg.Check)
	}
	if hidden {
		t.Fatalf("instance hidden (%q) after an install", reason)
	}

	mustInstall(t, a, v2, OutcomeInstalled)
	e.wantServing("2.0.0")
	if reg, _, _ := e.reg.service("web-blue-1"); reg.Meta[pool.MetaVersion] != "2.0.0" {
		t.Fatalf("registered version %q after v2", reg.Meta[pool.MetaVersion])
	}
	pidV2 := a.Inventory(ctx).App.PID

	res = mustInstall(t, a, bad, OutcomeFailed)
	if res.Step != stepHealth || !res.RolledBack || !strings.Contains(res.Error, "status 500") {
		t.Fatalf("failed install = %+v; want step health, rolled back, the probe's status", res.Install)
	}
	if res.Current == nil || res.Current.Version != "2.0.0" {
		t.Fatalf("current after the rollback = %+v, want 2.0.0", res.Current)
	}
	e.wantServing("2.0.0")
	wantLink(t, e.dir, "2.0.0-"+shortDigest(v2))
	if _, err := os.Stat(filepath.Join(e.dir, releasesDir, "3.0.0-"+shortDigest(bad))); !os.IsNotExist(err) {
		t.Fatalf("the failed release is still on disk: %v", err)
	}
	inv := a.Inventory(ctx)
	if inv.LastInstall == nil || inv.LastInstall.Outcome != OutcomeFailed || inv.LastInstall.Digest != bad {
		t.Fatalf("last install = %+v", inv.LastInstall)
	}
	if inv.App.PID == pidV2 || !inv.App.Running || inv.App.Health != HealthPassing {
		t.Fatalf("app after the rollback = %+v; want a restarted, healthy v2 (old pid %d)", inv.App, pidV2)
	}

	// The current digest again: nothing changes, not even the last install.
	res = mustInstall(t, a, v2, OutcomeUnchanged)
	if after := a.Inventory(ctx); after.App.PID != inv.App.PID || after.LastInstall.Digest != bad {
		t.Fatalf("an unchanged install restarted the app or was recorded: %+v", after)
	}
	if res.Version != "2.0.0" {
		t.Fatalf("unchanged result = %+v", res)
	}

	// v1 is still on disk (previous of v2): going back fetches nothing.
	opens := e.src.opens
	mustInstall(t, a, v1, OutcomeInstalled)
	e.wantServing("1.0.0")
	if e.src.opens != opens {
		t.Fatalf("reinstalling a release on disk downloaded it again")
	}
}

func TestInstallRefusesBadRequests(t *testing.T) {
	e := newTestEnv(t)
	a, _ := e.start()
	wrongSvc := e.src.add(testPackageNamed(t, "api", "1.0.0"))
	corrupt := digestOf([]byte("the real bytes"))
	e.src.put(corrupt, []byte("other bytes"))
	tests := []struct {
		name     string
		digest   string
		wantErr  error
		wantStep string
		wantMsg  string
	}{
		{"malformed digest", "sha256:XYZ", ErrBadRequest, "", "is not a package digest"},
		{"unknown digest", digestOf([]byte("nothing")), nil, stepFetch, "not found"},
		{"digest mismatch", corrupt, nil, stepFetch, "hash to"},
		{"other service", wrongSvc, nil, stepUnpack, `is "api" version 1.0.0, not a package of service "web"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := a.Install(context.Background(), tt.digest)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.wantMsg) {
					t.Fatalf("got %v, want %v containing %q", err, tt.wantErr, tt.wantMsg)
				}
				return
			}
			if err != nil || res.Outcome != OutcomeFailed || res.Step != tt.wantStep || !strings.Contains(res.Error, tt.wantMsg) {
				t.Fatalf("got %+v, %v; want failed at %s with %q", res.Install, err, tt.wantStep, tt.wantMsg)
			}
			if res.RolledBack || res.Current != nil {
				t.Fatalf("nothing was installed, yet current = %+v, rolled back %v", res.Current, res.RolledBack)
			}
		})
	}
	if _, err := os.Lstat(filepath.Join(e.dir, currentLink)); !os.IsNotExist(err) {
		t.Fatalf("current exists after failed installs: %v", err)
	}
}

func TestInstallFallsBackToAnotherServer(t *testing.T) {
	e := newTestEnv(t)
	good := newFakeSource("good server")
	d := good.add(testPackage(t, "1.0.0", "serve", pkgfile.Hooks{}))
	e.src.put(d, []byte("truncated")) // the first server's copy is broken
	e.cfg.Sources = []BlobSource{e.src, good}
	a, _ := e.start()
	mustInstall(t, a, d, OutcomeInstalled)
	e.wantServing("1.0.0")
}

func TestHooksFailBeforeAndAfterTheSwitch(t *testing.T) {
	e := newTestEnv(t)
	a, _ := e.start()
	v1 := e.src.add(testPackage(t, "1.0.0", "serve", pkgfile.Hooks{}))
	pre := e.src.add(testPackage(t, "2.0.0", "serve", pkgfile.Hooks{PreSwitch: [][]string{hook(t, "hook-fail")}}))
	post := e.src.add(testPackage(t, "3.0.0", "serve", pkgfile.Hooks{PostSwitch: [][]string{hook(t, "hook"), hook(t, "hook-fail")}}))
	mustInstall(t, a, v1, OutcomeInstalled)
	pid := a.Inventory(context.Background()).App.PID

	res := mustInstall(t, a, pre, OutcomeFailed)
	if res.Step != stepPreSwitch || res.RolledBack || !strings.Contains(res.Error, "migration refused") {
		t.Fatalf("pre_switch failure = %+v", res.Install)
	}
	if got := a.Inventory(context.Background()).App.PID; got != pid {
		t.Fatalf("a pre_switch failure restarted the app: pid %d, was %d", got, pid)
	}
	res = mustInstall(t, a, post, OutcomeFailed)
	if res.Step != stepPostSwitch || !res.RolledBack || !strings.Contains(res.Error, "post_switch hook 1") {
		t.Fatalf("post_switch failure = %+v", res.Install)
	}
	wantLink(t, e.dir, "1.0.0-"+shortDigest(v1))
	e.wantServing("1.0.0")
	dirs, err := a.layout.listReleases()
	if err != nil || !slices.Equal(dirs, []string{"1.0.0-" + shortDigest(v1)}) {
		t.Fatalf("releases on disk = %v, %v; want only v1", dirs, err)
	}
}

func TestFirstInstallFailureLeavesNothing(t *testing.T) {
	e := newTestEnv(t)
	a, _ := e.start()
	bad := e.src.add(testPackage(t, "1.0.0", "exit", pkgfile.Hooks{}))
	res := mustInstall(t, a, bad, OutcomeFailed)
	if res.Step != stepHealth || !res.RolledBack || !strings.Contains(res.Error, "exited") {
		t.Fatalf("result = %+v", res.Install)
	}
	if _, err := os.Lstat(filepath.Join(e.dir, currentLink)); !os.IsNotExist(err) {
		t.Fatalf("current exists after a failed first install: %v", err)
	}
	if inv := a.Inventory(context.Background()); inv.Current != nil || len(inv.Releases) != 0 || inv.App.Running {
		t.Fatalf("inventory after a failed first install = %+v", inv)
	}
	if reg, _, _ := e.reg.service("web-blue-1"); reg != nil {
		t.Fatalf("a failed first install registered the instance: %+v", reg)
	}
}

func TestPruneKeepsCurrentAndPrevious(t *testing.T) {
	e := newTestEnv(t)
	a, _ := e.start()
	var dirs []string
	for _, v := range []string{"1", "2", "3", "4"} {
		d := e.src.add(testPackage(t, v, "serve", pkgfile.Hooks{}))
		mustInstall(t, a, d, OutcomeInstalled)
		dirs = append(dirs, v+"-"+shortDigest(d))
		time.Sleep(10 * time.Millisecond) // distinct install times order the releases
	}
	got, err := a.layout.listReleases()
	// keep_releases 2: the previous (3) and one more (2) besides current (4).
	if want := dirs[1:]; err != nil || !slices.Equal(got, want) {
		t.Fatalf("releases = %v, %v; want %v", got, err, want)
	}
	// Switch back to 2; then a new install must keep 2 (now previous).
	if res, err := a.SwitchLocal(context.Background(), dirs[1]); err != nil || res.Outcome != OutcomeInstalled {
		t.Fatalf("switch-local: %+v, %v", res, err)
	}
	e.wantServing("2")
	d5 := e.src.add(testPackage(t, "5", "serve", pkgfile.Hooks{}))
	mustInstall(t, a, d5, OutcomeInstalled)
	got, _ = a.layout.listReleases()
	if !slices.Contains(got, dirs[1]) || !slices.Contains(got, "5-"+shortDigest(d5)) || len(got) != 3 {
		t.Fatalf("releases after switching back and installing 5 = %v", got)
	}
}

func TestSwitchLocalRefusesUnknownReleases(t *testing.T) {
	e := newTestEnv(t)
	a, _ := e.start()
	for _, give := range []string{"../etc", "1.0.0-0123456789ab", "", "current"} {
		if _, err := a.SwitchLocal(context.Background(), give); !errors.Is(err, ErrBadRequest) {
			t.Errorf("switch-local %q: %v, want ErrBadRequest", give, err)
		}
	}
}

func TestConcurrentInstalls(t *testing.T) {
	e := newTestEnv(t)
	a, _ := e.start()
	slow := e.src.add(testPackage(t, "1.0.0", "serve", pkgfile.Hooks{PreSwitch: [][]string{hook(t, "sleep")}}))
	other := e.src.add(testPackage(t, "2.0.0", "serve", pkgfile.Hooks{}))
	type out struct {
		res InstallResult
		err error
	}
	first := make(chan out, 1)
	go func() { r, err := a.Install(context.Background(), slow); first <- out{r, err} }()
	waitUntil(t, "the first install to start", func() error {
		if a.Inventory(context.Background()).Installing == nil {
			return errors.New("not yet")
		}
		return nil
	})
	if _, err := a.Install(context.Background(), other); !errors.Is(err, ErrBusy) {
		t.Fatalf("a second, different install: %v; want ErrBusy", err)
	}
	same, err := a.Install(context.Background(), slow)
	f := <-first
	if err != nil || f.err != nil || same.Outcome != OutcomeInstalled || same.StartedAt != f.res.StartedAt {
		t.Fatalf("joined install %+v, %v; first %+v, %v; want the same installed result", same.Install, err, f.res.Install, f.err)
	}
}

// mustInstall installs digest and requires outcome.
func mustInstall(t *testing.T, a *Agent, digest string, want Outcome) InstallResult {
	t.Helper()
	res, err := a.Install(context.Background(), digest)
	if err != nil {
		t.Fatalf("install %s: %v", digest, err)
	}
	if res.Outcome != want {
		t.Fatalf("install %s: outcome %s (step %s: %s), want %s", digest, res.Outcome, res.Step, res.Error, want)
	}
	return res
}

// wantLink fails unless `current` points at releases/dir.
func wantLink(t *testing.T, dataDir, dir string) {
	t.Helper()
	got, err := os.Readlink(filepath.Join(dataDir, currentLink))
	if err != nil || got != filepath.Join(releasesDir, dir) {
		t.Fatalf("current -> %q, %v; want %q", got, err, filepath.Join(releasesDir, dir))
	}
}

// testPackageNamed is a minimal valid package of another service.
func testPackageNamed(t *testing.T, name, version string) []byte {
	t.Helper()
	m := pkgfile.Manifest{Name: name, Version: version}
	return pkgtestPackage(t, m)
}
