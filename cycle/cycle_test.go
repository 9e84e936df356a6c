package cycle

import (
	"errors"
	"testing"
)

func TestExitCode(t *testing.T) {
	tests := []struct {
		give Phase
		want int
	}{
		{give: Done, want: 0},
		{give: Aborted, want: 3},
		{give: RolledBack, want: 4},
		{give: Bake, want: 1},
	}
	for _, tt := range tests {
		if got := ExitCode(tt.give); got != tt.want {
			t.Errorf("ExitCode(%s) = %d, want %d", tt.give, got, tt.want)
		}
	}
}

func TestCheckChange(t *testing.T) {
	cur := Cycle{ID: "web-1", Rev: 3, Service: "web", Kind: KindDeploy, Target: "blue", Phase: Smoke,
		Package: Release{Version: "1", Digest: "sha256:aa"}}
	tests := []struct {
		name    string
		give    func(c *Cycle)
		wantErr error
		wantOK  bool
	}{
		{name: "next revision, allowed move", give: func(c *Cycle) { c.Rev, c.Phase = 4, Switch }, wantOK: true},
		{name: "stale revision", give: func(c *Cycle) { c.Rev = 3 }, wantErr: ErrConflict},
		{name: "skipped revision", give: func(c *Cycle) { c.Rev = 5 }, wantErr: ErrConflict},
		{name: "smoke to done (a recycle)", give: func(c *Cycle) { c.Rev, c.Phase = 4, Done }, wantOK: true},
		{name: "smoke to bake", give: func(c *Cycle) { c.Rev, c.Phase = 4, Bake }},
		{name: "package changed", give: func(c *Cycle) { c.Rev, c.Package.Digest = 4, "sha256:bb" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next := cur.Clone()
			tt.give(&next)
			err := CheckChange(cur, next)
			switch {
			case tt.wantOK && err != nil:
				t.Errorf("err = %v, want nil", err)
			case !tt.wantOK && err == nil:
				t.Error("accepted, want an error")
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}
	done := cur
	done.Phase = Done
	if err := CheckChange(done, Cycle{Rev: 4}); !errors.Is(err, ErrFinished) {
		t.Errorf("change of a finished cycle: err = %v, want ErrFinished", err)
	}
}
