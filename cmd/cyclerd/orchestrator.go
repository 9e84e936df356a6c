package main

import (
	"time"

	"github.com/cyclerhq/cycler/config"
	"github.com/cyclerhq/cycler/cycle"
	"github.com/cyclerhq/cycler/orchestrator"
)

// serviceSpecs turns the validated service blocks into the orchestrator's
// definitions; the values were validated when the config was loaded.
func serviceSpecs(cfg *config.Server) map[string]orchestrator.Spec {
	out := make(map[string]orchestrator.Spec, len(cfg.Services))
	for _, s := range cfg.Services {
		spec := orchestrator.Spec{
			Name: s.Name, MinLive: s.MinLive, MaxParallel: s.MaxParallel, FailureLimit: s.FailureLimit,
			Drain: s.DrainDuration(), BakeTime: s.BakeTimeDuration(), BakeInterval: s.BakeIntervalDuration(),
			Standby: s.Standby, BreakerFailures: uint32(s.Breaker.ConsecutiveFailures), BreakerCooldown: s.Breaker.CooldownDuration(),
			Smoke: s.SmokeChecks(), Bake: s.BakeChecks(), Timeouts: map[cycle.Phase]time.Duration{},
		}
		for _, p := range []cycle.Phase{cycle.Preflight, cycle.Hide, cycle.Deploy, cycle.Smoke, cycle.Switch, cycle.Bake, cycle.Standby} {
			spec.Timeouts[p] = s.PhaseTimeout(string(p))
		}
		if s.Freeze != nil {
			spec.Freeze = s.Freeze.Reason
		}
		spec.Windows = s.Windows
		spec.Schedules = s.Schedules
		out[s.Name] = spec
	}
	return out
}
