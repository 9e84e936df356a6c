package config

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	// The zone database is embedded so that time_zone names resolve the
	// same way on every server, including hosts without tzdata installed
	// (minimal containers); the host's database is still used first.
	_ "time/tzdata"

	"github.com/robfig/cron/v3"

	"github.com/cyclerhq/cycler/smoke"
)

// Standby policies: what happens to the pool that was live once a cycle
// has finished.
const (
	// StandbyKeep leaves the old pool hidden on its version, ready for an
	// instant rollback.
	StandbyKeep = "keep"
	// StandbyRefresh deploys the new version to the old pool as well.
	StandbyRefresh = "refresh"
)

// Schedule actions.
const (
	// ActionDeployStaged deploys the package staged with
	// `cyclerctl deploy --at-window`.
	ActionDeployStaged = "deploy-staged"
	// ActionRecycle refreshes the standby pool with the live version.
	ActionRecycle = "recycle"
)

// Service defaults.
const (
	defaultDrain          = 10 * time.Second
	defaultBakeTime       = 30 * time.Second
	defaultBakeInterval   = 2 * time.Second
	defaultCooldown       = 10 * time.Minute
	defaultBakeTimeoutPad = 2 * time.Minute
	defaultTimeZone       = "UTC"
	defaultMaxDelay       = 15 * time.Minute
)

// defaultPhaseTimeouts are the defaults of the timeouts block, by phase.
// The bake timeout has none: it follows bake_time.
var defaultPhaseTimeouts = map[string]time.Duration{
	"preflight": 30 * time.Second,
	"hide":      2 * time.Minute,
	"deploy":    10 * time.Minute,
	"smoke":     5 * time.Minute,
	"switch":    2 * time.Minute,
	"done":      10 * time.Minute,
}

// Service is a service "NAME" { ... } block of the server configuration:
// how cycles of one Consul service run.
type Service struct {
	// Name is the Consul service. Unique among the service blocks.
	Name string `hcl:"name,label"`
	// MinLive is the fewest healthy live instances a cycle may start with.
	MinLive int `hcl:"min_live,optional"`
	// MaxParallel is how many hosts of the target pool are deployed at once.
	MaxParallel int `hcl:"max_parallel,optional"`
	// FailureLimitSpec is failure_limit as written: a number of hosts
	// ("2") or a percentage of the target pool ("25%"). See FailureLimit.
	FailureLimitSpec string `hcl:"failure_limit,optional"`
	// Drain is how long a hidden pool keeps finishing requests after every
	// LB acked, as a duration string; "0s" means no wait.
	Drain string `hcl:"drain,optional"`
	// BakeTime is how long the bake checks run through the LBs after a
	// switch, as a duration string.
	BakeTime string `hcl:"bake_time,optional"`
	// BakeInterval is the pause between two rounds of bake checks.
	BakeInterval string `hcl:"bake_interval,optional"`
	// Standby is StandbyKeep or StandbyRefresh.
	Standby string `hcl:"standby,optional"`
	// Breaker configures the service's circuit breaker.
	Breaker Breaker `hcl:"breaker,block"`
	// Timeouts bounds each phase of a cycle.
	Timeouts Timeouts `hcl:"timeouts,block"`
	// Smoke are the checks run against every hidden host directly before
	// the switch.
	Smoke []ServiceCheck `hcl:"smoke,block"`
	// Bake are the checks run through every LB after the switch.
	Bake []ServiceCheck `hcl:"bake,block"`
	// Schedules start cycles from cron specs.
	Schedules []Schedule `hcl:"schedule,block"`
	// Windows are when cycles may start; none means at any time.
	Windows []Window `hcl:"window,block"`
	// Freeze, when set, blocks every cycle of the service.
	Freeze *Freeze `hcl:"freeze,block"`
}

// Breaker is the breaker { ... } block of a service.
type Breaker struct {
	// ConsecutiveFailures is how many host failures and aborted cycles in
	// a row open the breaker.
	ConsecutiveFailures int `hcl:"consecutive_failures,optional"`
	// Cooldown is how long the breaker stays open, as a duration string.
	Cooldown string `hcl:"cooldown,optional"`
}

// Timeouts is the timeouts { ... } block of a service: the longest each
// phase of a cycle may take, as duration strings.
type Timeouts struct {
	// Preflight bounds the preflight checks.
	Preflight string `hcl:"preflight,optional"`
	// Hide bounds hiding the target pool, drain included.
	Hide string `hcl:"hide,optional"`
	// Deploy bounds installing the package on the whole target pool.
	Deploy string `hcl:"deploy,optional"`
	// Smoke bounds the smoke checks.
	Smoke string `hcl:"smoke,optional"`
	// Switch bounds the switch, until every LB acked.
	Switch string `hcl:"switch,optional"`
	// Bake bounds the bake phase. Empty means bake_time plus 2 minutes.
	Bake string `hcl:"bake,optional"`
	// Done bounds the standby policy after the switch.
	Done string `hcl:"done,optional"`
}

// ServiceCheck is a smoke "NAME" or bake "NAME" block of a service: one
// smoke.Check. (Check is taken by `cyclerd config check`.)
type ServiceCheck struct {
	// Name identifies the check; unique within its list.
	Name string `hcl:"name,label"`
	// Kind is "http", "tcp" or "command".
	Kind string `hcl:"kind,optional"`
	// Port, when set, replaces the target's port.
	Port int `hcl:"port,optional"`
	// Timeout bounds each attempt, as a duration string; empty means
	// smoke.DefaultTimeout.
	Timeout string `hcl:"timeout,optional"`
	// Retries is how many attempts follow a failed one.
	Retries int `hcl:"retries,optional"`
	// BackoffInitial is the first delay between attempts; empty means
	// smoke.DefaultBackoffInitial.
	BackoffInitial string `hcl:"backoff_initial,optional"`
	// BackoffMax caps the delay between attempts; empty means
	// smoke.DefaultBackoffMax.
	BackoffMax string `hcl:"backoff_max,optional"`
	// Method is the HTTP method; empty means GET.
	Method string `hcl:"method,optional"`
	// Path is the HTTP request path, like "/health".
	Path string `hcl:"path,optional"`
	// Host, when set, is sent as the Host header.
	Host string `hcl:"host,optional"`
	// Status lists the accepted HTTP status codes; empty means 200.
	Status []int `hcl:"status,optional"`
	// BodyContains must occur in the body, when set.
	BodyContains string `hcl:"body_contains,optional"`
	// BodyMatches is a regular expression the body must match, when set.
	BodyMatches string `hcl:"body_matches,optional"`
	// Headers maps response header names to the value one of their values
	// must equal.
	Headers map[string]string `hcl:"headers,optional"`
	// FollowRedirects judges the response after redirects.
	FollowRedirects bool `hcl:"follow_redirects,optional"`
	// MaxBodyBytes bounds how much of the body is read; 0 means
	// smoke.DefaultMaxBodyBytes.
	MaxBodyBytes int64 `hcl:"max_body_bytes,optional"`
	// Command is the program and its arguments of a "command" check.
	Command []string `hcl:"command,optional"`
}

// Schedule is a schedule "NAME" { ... } block: a cycle started by cron.
type Schedule struct {
	// Name identifies the schedule.
	Name string `hcl:"name,label"`
	// Cron is a 5-field cron spec ("0 3 * * *"), a 6-field one with
	// seconds first ("30 0 3 * * *"), or a descriptor ("@daily",
	// "@every 6h"), evaluated in TimeZone. ParseCron reads it.
	Cron string `hcl:"cron,optional"`
	// TimeZone is a tz database name, like "Europe/Berlin".
	TimeZone string `hcl:"time_zone,optional"`
	// Action is ActionDeployStaged or ActionRecycle.
	Action string `hcl:"action,optional"`
	// MaxDelay is how late a fire missed because of downtime or a
	// failover may still run, when the service has no windows (with
	// windows, a missed fire runs only inside one), as a duration string.
	MaxDelay string `hcl:"max_delay,optional"`
}

// Window is a window "NAME" { ... } block: a time of day, on some days of
// the week, when cycles may start.
type Window struct {
	// Name identifies the window.
	Name string `hcl:"name,label"`
	// Days lists the days ("mon" ... "sun"); empty means every day.
	Days []string `hcl:"days,optional"`
	// Start is when the window opens, "HH:MM".
	Start string `hcl:"start,optional"`
	// End is when the window closes, "HH:MM" after Start; "24:00" is
	// midnight at the end of the day.
	End string `hcl:"end,optional"`
	// TimeZone is a tz database name, like "Europe/Berlin".
	TimeZone string `hcl:"time_zone,optional"`
}

// Freeze is the freeze { ... } block of a service.
type Freeze struct {
	// Reason says why, for the refusal message and the audit trail.
	Reason string `hcl:"reason,optional"`
}

// DefaultService returns a service block named name with every default
// applied.
func DefaultService(name string) Service {
	return Service{
		Name:             name,
		MinLive:          1,
		MaxParallel:      1,
		FailureLimitSpec: "0",
		Drain:            defaultDrain.String(),
		BakeTime:         defaultBakeTime.String(),
		BakeInterval:     defaultBakeInterval.String(),
		Standby:          StandbyKeep,
		Breaker:          Breaker{ConsecutiveFailures: 3, Cooldown: defaultCooldown.String()},
		Timeouts: Timeouts{
			Preflight: defaultPhaseTimeouts["preflight"].String(),
			Hide:      defaultPhaseTimeouts["hide"].String(),
			Deploy:    defaultPhaseTimeouts["deploy"].String(),
			Smoke:     defaultPhaseTimeouts["smoke"].String(),
			Switch:    defaultPhaseTimeouts["switch"].String(),
			Done:      defaultPhaseTimeouts["done"].String(),
		},
	}
}

// setDefaults implements defaulter.
func (s *Service) setDefaults() { *s = DefaultService(s.Name) }

// setDefaults implements defaulter.
func (c *ServiceCheck) setDefaults() { c.Kind = string(smoke.KindHTTP) }

// setDefaults implements defaulter.
func (s *Schedule) setDefaults() {
	s.TimeZone = defaultTimeZone
	s.MaxDelay = "15m" // defaultMaxDelay, as an operator writes it
}

// setDefaults implements defaulter.
func (w *Window) setDefaults() { w.TimeZone = defaultTimeZone }

// Service returns the service block named name.
func (s *Server) Service(name string) (Service, bool) {
	for _, svc := range s.Services {
		if svc.Name == name {
			return svc, true
		}
	}
	return Service{}, false
}

// FailureLimit returns how many hosts of a target pool of hosts hosts may
// fail deploy or smoke while the cycle goes on: the count, at most hosts,
// or the percentage of hosts rounded down. A value Validate would reject
// allows no failures.
func (s Service) FailureLimit(hosts int) int {
	n, percent, ok := parseFailureLimit(s.FailureLimitSpec)
	if !ok || hosts <= 0 {
		return 0
	}
	if percent {
		return hosts * n / 100
	}
	return min(n, hosts)
}

// parseFailureLimit reads "N" or "N%".
func parseFailureLimit(v string) (n int, percent bool, ok bool) {
	digits, percent := strings.CutSuffix(v, "%")
	if digits == "" || len(digits) > 9 || strings.Trim(digits, "0123456789") != "" {
		return 0, false, false
	}
	n, err := strconv.Atoi(digits)
	if err != nil || (percent && n > 100) {
		return 0, false, false
	}
	return n, percent, true
}

// DrainDuration returns Drain parsed; a value Validate would reject yields
// the default, 10s.
func (s Service) DrainDuration() time.Duration {
	d, err := time.ParseDuration(s.Drain)
	if err != nil || d < 0 {
		return defaultDrain
	}
	return d
}

// BakeTimeDuration returns BakeTime parsed; a value Validate would reject
// yields the default, 30s.
func (s Service) BakeTimeDuration() time.Duration {
	return parseDurationOr(s.BakeTime, defaultBakeTime)
}

// BakeIntervalDuration returns BakeInterval parsed; a value Validate would
// reject yields the default, 2s.
func (s Service) BakeIntervalDuration() time.Duration {
	return parseDurationOr(s.BakeInterval, defaultBakeInterval)
}

// CooldownDuration returns Cooldown parsed; a value Validate would reject
// yields the default, 10m.
func (b Breaker) CooldownDuration() time.Duration {
	return parseDurationOr(b.Cooldown, defaultCooldown)
}

// PhaseTimeout returns the timeout of a phase: "preflight", "hide",
// "deploy", "smoke", "switch", "bake" or "done" ("standby", the name the
// cycle uses for the done step, is the same). The bake timeout defaults
// to bake_time plus 2 minutes. An unknown phase yields 0; a value Validate
// would reject yields the phase's default.
func (s Service) PhaseTimeout(phase string) time.Duration {
	t := s.Timeouts
	bake := s.BakeTimeDuration() + defaultBakeTimeoutPad
	switch phase {
	case "preflight":
		return parseDurationOr(t.Preflight, defaultPhaseTimeouts[phase])
	case "hide":
		return parseDurationOr(t.Hide, defaultPhaseTimeouts[phase])
	case "deploy":
		return parseDurationOr(t.Deploy, defaultPhaseTimeouts[phase])
	case "smoke":
		return parseDurationOr(t.Smoke, defaultPhaseTimeouts[phase])
	case "switch":
		return parseDurationOr(t.Switch, defaultPhaseTimeouts[phase])
	case "bake":
		return parseDurationOr(t.Bake, bake)
	case "done", "standby":
		return parseDurationOr(t.Done, defaultPhaseTimeouts["done"])
	}
	return 0
}

// SmokeChecks returns the smoke blocks as smoke checks.
func (s Service) SmokeChecks() []smoke.Check { return smokeChecks(s.Smoke) }

// BakeChecks returns the bake blocks as smoke checks.
func (s Service) BakeChecks() []smoke.Check { return smokeChecks(s.Bake) }

// smokeChecks converts a list of check blocks.
func smokeChecks(cs []ServiceCheck) []smoke.Check {
	if len(cs) == 0 {
		return nil
	}
	out := make([]smoke.Check, len(cs))
	for i, c := range cs {
		out[i] = c.SmokeCheck()
	}
	return out
}

// SmokeCheck returns the block as a smoke.Check. Durations Validate would
// reject become 0, which smoke replaces with its defaults.
func (c ServiceCheck) SmokeCheck() smoke.Check {
	return smoke.Check{
		Name:    c.Name,
		Kind:    smoke.Kind(c.Kind),
		Port:    c.Port,
		Timeout: parseDurationOr(c.Timeout, 0),
		Retries: c.Retries,
		Backoff: smoke.Backoff{
			Initial: parseDurationOr(c.BackoffInitial, 0),
			Max:     parseDurationOr(c.BackoffMax, 0),
		},
		HTTP: smoke.HTTPSpec{
			Method:          c.Method,
			Path:            c.Path,
			Host:            c.Host,
			Status:          append([]int(nil), c.Status...),
			BodyContains:    c.BodyContains,
			BodyMatches:     c.BodyMatches,
			Headers:         cloneMap(c.Headers),
			FollowRedirects: c.FollowRedirects,
			MaxBodyBytes:    c.MaxBodyBytes,
		},
		Command: smoke.CommandSpec{Argv: append([]string(nil), c.Command...)},
	}
}

// cloneMap copies m, keeping nil as nil.
func cloneMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Location returns the schedule's time zone, UTC when it is not valid.
func (s Schedule) Location() *time.Location { return location(s.TimeZone) }

// MaxDelayDuration returns MaxDelay parsed; a value Validate would reject
// yields the default, 15m.
func (s Schedule) MaxDelayDuration() time.Duration {
	return parseDurationOr(s.MaxDelay, defaultMaxDelay)
}

// cronParser is the one cron dialect of schedules: robfig/cron's standard
// five fields with an optional seconds field first, and the descriptors.
// `config check` and the leader's scheduler both parse with it, so a spec
// the check accepts is a spec the scheduler runs.
var cronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ParseCron parses a cron spec the way schedules read it: 5 fields, 6 with
// seconds first, or a descriptor. A "CRON_TZ=" prefix sets the zone.
func ParseCron(spec string) (cron.Schedule, error) { return cronParser.Parse(spec) }

// CronParser returns the parser ParseCron uses, for cron.WithParser.
func CronParser() cron.ScheduleParser { return cronParser }

// CronSchedule parses Cron in the schedule's time zone, so that Next
// returns the runs of the spec's wall-clock times in that zone.
func (s Schedule) CronSchedule() (cron.Schedule, error) {
	if tzPrefix(s.Cron) {
		return nil, fmt.Errorf("config: schedule %q: the cron spec sets its own time zone; use time_zone", s.Name)
	}
	sched, err := ParseCron("CRON_TZ=" + s.Location().String() + " " + s.Cron)
	if err != nil {
		return nil, fmt.Errorf("config: schedule %q: %w", s.Name, err)
	}
	return sched, nil
}

// Location returns the window's time zone, UTC when it is not valid.
func (w Window) Location() *time.Location { return location(w.TimeZone) }

// Contains reports whether t falls inside the window: on one of its days
// (in its time zone), at or after Start and before End.
func (w Window) Contains(t time.Time) bool {
	start, okS := clockMinutes(w.Start, false)
	end, okE := clockMinutes(w.End, true)
	if !okS || !okE || end <= start {
		return false
	}
	t = t.In(w.Location())
	if len(w.Days) > 0 && !containsString(w.Days, weekdays[t.Weekday()]) {
		return false
	}
	m := t.Hour()*60 + t.Minute()
	return m >= start && m < end
}

// NextOpen returns when the window next opens after t, looking eight days
// ahead; false when it has no valid times. The opening is the window's
// start time on the wall clock of its zone (time.Date settles a start
// that a DST change skips or repeats).
func (w Window) NextOpen(t time.Time) (time.Time, bool) {
	start, okS := clockMinutes(w.Start, false)
	end, okE := clockMinutes(w.End, true)
	if !okS || !okE || end <= start {
		return time.Time{}, false
	}
	loc := w.Location()
	lt := t.In(loc)
	for i := range 9 {
		day := lt.AddDate(0, 0, i)
		if len(w.Days) > 0 && !containsString(w.Days, weekdays[day.Weekday()]) {
			continue
		}
		y, m, d := day.Date()
		open := time.Date(y, m, d, start/60, start%60, 0, 0, loc)
		if open.After(t) {
			return open, true
		}
	}
	return time.Time{}, false
}

// InWindow reports whether a cycle may start at t: the service has no
// windows, or t falls inside one of them.
func (s Service) InWindow(t time.Time) bool {
	if len(s.Windows) == 0 {
		return true
	}
	for _, w := range s.Windows {
		if w.Contains(t) {
			return true
		}
	}
	return false
}

// weekdays are the day names windows use, indexed by time.Weekday.
var weekdays = [...]string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}

// dayNames are the day names in the order a week is written.
var dayNames = []string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"}

// containsString reports whether vs holds v.
func containsString(vs []string, v string) bool {
	for _, x := range vs {
		if x == v {
			return true
		}
	}
	return false
}

// sortedKeys returns the keys of m in order, so problems come out stable.
func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// location loads a time zone, falling back to UTC.
func location(name string) *time.Location {
	if name == "Local" {
		return time.UTC
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return time.UTC
	}
	return loc
}

// clockRE matches "HH:MM" on a 24-hour clock.
var clockRE = regexp.MustCompile(`^([01][0-9]|2[0-3]):[0-5][0-9]$`)

// clockMinutes parses "HH:MM" into minutes after midnight. With end set,
// "24:00" (the end of the day) is allowed too.
func clockMinutes(v string, end bool) (int, bool) {
	if end && v == "24:00" {
		return 24 * 60, true
	}
	if !clockRE.MatchString(v) {
		return 0, false
	}
	h, _ := strconv.Atoi(v[:2])
	m, _ := strconv.Atoi(v[3:])
	return h*60 + m, true
}

// tzPrefix reports whether a cron spec starts with robfig/cron's own time
// zone prefix.
func tzPrefix(spec string) bool {
	spec = strings.TrimSpace(spec)
	return strings.HasPrefix(spec, "CRON_TZ=") || strings.HasPrefix(spec, "TZ=")
}

// blockNameRE is the name of a check, schedule or window block.
var blockNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// blockNameRule says in words what blockNameRE allows.
const blockNameRule = "use 1-64 letters, digits, '.', '_' and '-', starting with a letter or digit"

// checkServices validates the service blocks of a server.
func checkServices(c *checker, services []Service) {
	seen := make(map[string]bool, len(services))
	for _, s := range services {
		p := labelPath("service", s.Name)
		if seen[s.Name] {
			c.bad(p, quote(s.Name), "is defined twice; give each service block its own name")
			continue
		}
		seen[s.Name] = true
		s.check(c, p)
	}
}

// check validates one service block at path p.
func (s Service) check(c *checker, p string) {
	c.serviceName(p, s.Name)
	c.atLeast(p+".min_live", int64(s.MinLive), 1)
	c.atLeast(p+".max_parallel", int64(s.MaxParallel), 1)
	if _, _, ok := parseFailureLimit(s.FailureLimitSpec); !ok {
		c.bad(p+".failure_limit", quote(s.FailureLimitSpec),
			`is not a failure limit; write a number of hosts, like "2", or a percentage of the target pool from "0%" to "100%", like "25%"`)
	}
	drainOK := c.durationAtLeastZero(p+".drain", s.Drain)
	c.duration(p+".bake_time", s.BakeTime)
	c.duration(p+".bake_interval", s.BakeInterval)
	c.enum(p+".standby", s.Standby, StandbyKeep, StandbyRefresh)
	c.atLeast(p+".breaker.consecutive_failures", int64(s.Breaker.ConsecutiveFailures), 1)
	c.duration(p+".breaker.cooldown", s.Breaker.Cooldown)
	s.checkTimeouts(c, p+".timeouts", drainOK)
	checkChecks(c, p+".smoke", s.Smoke)
	checkChecks(c, p+".bake", s.Bake)
	names := make(map[string]bool, len(s.Schedules))
	for _, sc := range s.Schedules {
		if sp := labelPath(p+".schedule", sc.Name); uniqueName(c, sp, sc.Name, "schedule", names) {
			sc.check(c, sp)
		}
	}
	names = make(map[string]bool, len(s.Windows))
	for _, w := range s.Windows {
		if wp := labelPath(p+".window", w.Name); uniqueName(c, wp, w.Name, "window", names) {
			w.check(c, wp)
		}
	}
	if s.Freeze != nil && strings.TrimSpace(s.Freeze.Reason) == "" {
		c.missing(p+".freeze.reason", "say why the service is frozen; it is shown when a cycle is refused")
	}
}

// checkTimeouts validates the timeouts block at path p. drainOK says
// whether drain is valid, so the hide timeout can be compared with it.
func (s Service) checkTimeouts(c *checker, p string, drainOK bool) {
	t := s.Timeouts
	for _, kv := range [...]struct{ key, v string }{
		{"preflight", t.Preflight}, {"hide", t.Hide}, {"deploy", t.Deploy},
		{"smoke", t.Smoke}, {"switch", t.Switch}, {"done", t.Done},
	} {
		c.duration(p+"."+kv.key, kv.v)
	}
	if hide, err := time.ParseDuration(t.Hide); err == nil && drainOK && hide > 0 && hide <= s.DrainDuration() {
		c.bad(p+".hide", quote(t.Hide), fmt.Sprintf("is not longer than drain %q; the hide phase includes the drain, so make it longer", s.Drain))
	}
	if t.Bake == "" {
		return
	}
	c.duration(p+".bake", t.Bake)
	bakeTime, err := time.ParseDuration(s.BakeTime)
	if bake, errB := time.ParseDuration(t.Bake); err == nil && errB == nil && bake > 0 && bakeTime > 0 && bake <= bakeTime {
		c.bad(p+".bake", quote(t.Bake), fmt.Sprintf("is not longer than bake_time %q; make it longer, or leave it out for bake_time plus 2m", s.BakeTime))
	}
}

// uniqueName checks the name of a labelled block and that no earlier block
// in seen has it. It returns false for a repeat, which is not checked
// further.
func uniqueName(c *checker, p, name, typ string, seen map[string]bool) bool {
	if seen[name] {
		c.bad(p, quote(name), fmt.Sprintf("is defined twice; give each %s block its own name", typ))
		return false
	}
	seen[name] = true
	c.pattern(p, name, blockNameRE, blockNameRule)
	return true
}

// checkChecks validates a list of smoke or bake blocks at path p.
func checkChecks(c *checker, p string, checks []ServiceCheck) {
	names := make(map[string]bool, len(checks))
	typ := p[strings.LastIndexByte(p, '.')+1:]
	for _, ch := range checks {
		cp := labelPath(p, ch.Name)
		if !uniqueName(c, cp, ch.Name, typ, names) {
			continue
		}
		ch.check(c, cp)
	}
}

// check validates one check block at path p: its duration strings here,
// everything else through smoke, reported at the block.
func (ch ServiceCheck) check(c *checker, p string) {
	for _, kv := range [...]struct{ key, v string }{
		{"timeout", ch.Timeout}, {"backoff_initial", ch.BackoffInitial}, {"backoff_max", ch.BackoffMax},
	} {
		if kv.v != "" {
			c.duration(p+"."+kv.key, kv.v)
		}
	}
	lower := make(map[string]string, len(ch.Headers))
	for _, name := range sortedKeys(ch.Headers) {
		l := strings.ToLower(name)
		if other, dup := lower[l]; dup {
			c.bad(labelPath(p+".headers", name), quote(name), fmt.Sprintf("is the same header as %q (names are not case-sensitive); keep one", other))
		}
		lower[l] = name
	}
	err := ch.SmokeCheck().Validate()
	if err == nil {
		return
	}
	errs := []error{err}
	var joined interface{ Unwrap() []error }
	if errors.As(err, &joined) {
		errs = joined.Unwrap()
	}
	prefix := fmt.Sprintf("check %q: ", ch.Name)
	for _, e := range errs {
		msg := strings.TrimPrefix(e.Error(), prefix)
		if rest, ok := strings.CutPrefix(msg, "argv"); ok {
			// smoke calls the program argv; the block calls it command.
			msg = "command" + rest
		}
		c.bad(p, "", msg)
	}
}

// check validates one schedule block at path p.
func (s Schedule) check(c *checker, p string) {
	c.timeZone(p+".time_zone", s.TimeZone)
	if d, err := time.ParseDuration(s.MaxDelay); err != nil || d <= 0 {
		c.bad(p+".max_delay", quote(s.MaxDelay), `is not a positive duration; write a number with a unit, like "15m" or "2h"`)
	}
	if c.required(p+".action", s.Action, `say what the schedule starts: "deploy-staged" or "recycle"`) {
		c.enum(p+".action", s.Action, ActionDeployStaged, ActionRecycle)
	}
	cp := p + ".cron"
	if !c.required(cp, s.Cron, `give a cron spec, like "0 3 * * *" (03:00 every day)`) {
		return
	}
	if tzPrefix(s.Cron) {
		c.bad(cp, quote(s.Cron), "sets a time zone inside the spec; remove the CRON_TZ= or TZ= part and set time_zone instead")
		return
	}
	sched, err := ParseCron(s.Cron)
	if err != nil {
		c.bad(cp, quote(s.Cron), fmt.Sprintf(`is not a cron spec (%v); use 5 fields, minute hour day-of-month month day-of-week, like "0 3 * * *", 6 with seconds first, like "30 0 3 * * *", or a descriptor like "@daily"`, err))
		return
	}
	if sched.Next(time.Now()).IsZero() {
		c.bad(cp, quote(s.Cron), "never runs (no date matches it); check the day of month and month")
	}
}

// check validates one window block at path p.
func (w Window) check(c *checker, p string) {
	c.timeZone(p+".time_zone", w.TimeZone)
	for i, d := range w.Days {
		c.enum(indexPath(p+".days", i), d, dayNames...)
	}
	c.unique(p+".days", w.Days)
	start, okS := checkClock(c, p+".start", w.Start, false)
	end, okE := checkClock(c, p+".end", w.End, true)
	switch {
	case !okS || !okE:
	case end < start:
		c.bad(p+".end", quote(w.End), fmt.Sprintf("is before start %s; a window cannot cross midnight: split it into two windows", w.Start))
	case end == start:
		c.bad(p+".end", quote(w.End), fmt.Sprintf("is the same as start %s; a window needs an end after its start", w.Start))
	}
}

// checkClock checks one "HH:MM" setting of a window.
func checkClock(c *checker, path, v string, end bool) (int, bool) {
	if !c.required(path, v, `give a time of day as "HH:MM" on a 24-hour clock, like "22:00"`) {
		return 0, false
	}
	m, ok := clockMinutes(v, end)
	if !ok {
		rule := `is not a time of day; write "HH:MM" on a 24-hour clock, from "00:00" to "23:59"`
		if end {
			rule += `, or "24:00" for the end of the day`
		}
		c.bad(path, quote(v), rule)
	}
	return m, ok
}

// timeZone checks a time zone name.
func (c *checker) timeZone(path, v string) {
	const hint = `name a zone from the tz database, like "UTC" or "Europe/Berlin"`
	switch {
	case v == "":
		c.bad(path, quote(v), "is empty; "+hint)
	case v == "Local":
		c.bad(path, quote(v), "is the server's own zone, which can differ between servers; "+hint)
	default:
		if _, err := time.LoadLocation(v); err != nil {
			c.bad(path, quote(v), "is not a known time zone; "+hint)
		}
	}
}

// durationAtLeastZero checks a duration that may be zero. It returns
// whether the value is valid.
func (c *checker) durationAtLeastZero(path, v string) bool {
	d, err := time.ParseDuration(v)
	switch {
	case err != nil:
		c.bad(path, quote(v), `is not a duration; write a number with a unit, like "10s" or "1m30s", or "0s" for none`)
		return false
	case d < 0:
		c.bad(path, quote(v), `is negative; use "0s" or more`)
		return false
	}
	return true
}
