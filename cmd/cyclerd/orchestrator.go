package main

import (
	"strconv"
	"strings"
	"time"

	"github.com/cyclerhq/cycler/config"
	"github.com/cyclerhq/cycler/cycle"
	"github.com/cyclerhq/cycler/orchestrator"
)

// serviceSpecs turns the validated service blocks into the orchestrator's
// definitions. Validation already rejected every bad value, so parse
// errors here cannot happen and fall back to zero.
func serviceSpecs(cfg *config.Server) map[string]orchestrator.Spec {
	out := make(map[string]orchestrator.Spec, len(cfg.Services))
	for _, s := range cfg.Services {
		spec := orchestrator.Spec{
			Name: s.Name, MinLive: s.MinLive, MaxParallel: s.MaxParallel, FailurePercent: -1,
			Drain: s.DrainDuration(), BakeTime: s.BakeTimeDuration(), BakeInterval: s.BakeIntervalDuration(),
			Standby: s.Standby, BreakerFailures: uint32(s.Breaker.ConsecutiveFailures), BreakerCooldown: s.Breaker.CooldownDuration(),
			Smoke: s.SmokeChecks(), Bake: s.BakeChecks(), Timeouts: map[cycle.Phase]time.Duration{},
		}
		if p, ok := strings.CutSuffix(s.FailureLimitSpec, "%"); ok {
			spec.FailurePercent, _ = strconv.Atoi(p)
		} else {
			spec.FailureCount, _ = strconv.Atoi(s.FailureLimitSpec)
		}
		for _, p := range []cycle.Phase{cycle.Preflight, cycle.Hide, cycle.Deploy, cycle.Smoke, cycle.Switch, cycle.Bake, cycle.Standby} {
			spec.Timeouts[p] = s.PhaseTimeout(string(p))
		}
		if s.Freeze != nil {
			spec.Freeze = s.Freeze.Reason
		}
		for _, w := range s.Windows {
			spec.Windows = append(spec.Windows, window(w))
		}
		out[s.Name] = spec
	}
	return out
}

var weekdays = map[string]time.Weekday{"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday}

func window(w config.Window) orchestrator.Window {
	out := orchestrator.Window{Name: w.Name, Start: clock(w.Start), End: clock(w.End), Location: w.Location()}
	for _, d := range w.Days {
		out.Days = append(out.Days, weekdays[d])
	}
	return out
}

// clock parses "HH:MM" into an offset from midnight.
func clock(s string) time.Duration {
	h, m, _ := strings.Cut(s, ":")
	hh, _ := strconv.Atoi(h)
	mm, _ := strconv.Atoi(m)
	return time.Duration(hh)*time.Hour + time.Duration(mm)*time.Minute
}
