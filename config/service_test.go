package config

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cyclerhq/cycler/smoke"
)

// serverHead is a valid server file without services; tests append
// service blocks to it.
const serverHead = "node_id = \"cyc-1\"\ndata_dir = \"/var/lib/cycler\"\n" + tokenHCL

func TestServiceFixtureLoads(t *testing.T) {
	s, err := LoadServer("testdata/server_services.hcl")
	if err != nil {
		t.Fatalf("problems:\n%v", err)
	}
	web, ok := s.Service("web")
	if !ok {
		t.Fatal(`Service("web") not found`)
	}
	api, _ := s.Service("api")
	_, missing := s.Service("admin")
	tests := []struct {
		name string
		give any
		want any
	}{
		{"service order", []string{s.Services[0].Name, s.Services[1].Name}, []string{"web", "api"}},
		{"unknown service", missing, false},
		{"min_live", web.MinLive, 2},
		{"max_parallel", web.MaxParallel, 3},
		{"failure limit of 10 hosts", web.FailureLimit(10), 2},
		{"drain", web.DrainDuration(), 15 * time.Second},
		{"bake_time", web.BakeTimeDuration(), time.Minute},
		{"bake_interval", web.BakeIntervalDuration(), 5 * time.Second},
		{"standby", web.Standby, StandbyRefresh},
		{"breaker failures", web.Breaker.ConsecutiveFailures, 5},
		{"breaker cooldown", web.Breaker.CooldownDuration(), 30 * time.Minute},
		{"switch timeout", web.PhaseTimeout("switch"), 90 * time.Second},
		{"bake timeout", web.PhaseTimeout("bake"), 5 * time.Minute},
		{"smoke check names", checkNames(web.SmokeChecks()), []string{"health", "admin-port", "script"}},
		{"smoke health", web.SmokeChecks()[0], smoke.Check{
			Name: "health", Kind: smoke.KindHTTP, Timeout: 2 * time.Second, Retries: 3,
			Backoff: smoke.Backoff{Initial: 250 * time.Millisecond, Max: 2 * time.Second},
			HTTP: smoke.HTTPSpec{Path: "/health", Status: []int{200, 204}, BodyMatches: "^ok",
				Headers: map[string]string{"Content-Type": "text/plain", "X-Pool": "blue"}, MaxBodyBytes: 4096},
			Command: smoke.CommandSpec{},
		}},
		{"smoke tcp", web.SmokeChecks()[1], smoke.Check{Name: "admin-port", Kind: smoke.KindTCP, Port: 9090}},
		{"smoke command", web.SmokeChecks()[2].Command.Argv, []string{"/usr/local/bin/check-web", "--quick"}},
		{"bake home", web.BakeChecks(), []smoke.Check{{
			Name: "home", Kind: smoke.KindHTTP,
			HTTP: smoke.HTTPSpec{Method: "HEAD", Path: "/", Host: "www.example.com", BodyContains: "Welcome", FollowRedirects: true},
		}}},
		{"schedules", web.Schedules, []Schedule{
			{Name: "nightly", Cron: "0 3 * * *", TimeZone: "Europe/Berlin", Action: ActionDeployStaged, MaxDelay: "15m"},
			{Name: "refresh", Cron: "@weekly", TimeZone: "UTC", Action: ActionRecycle, MaxDelay: "15m"},
		}},
		{"windows", web.Windows, []Window{
			{Name: "weeknights", Days: []string{"mon", "tue", "wed", "thu"}, Start: "22:00", End: "24:00", TimeZone: "Europe/Berlin"},
			{Name: "early", Start: "00:00", End: "01:30", TimeZone: "UTC"},
		}},
		{"freeze", web.Freeze, &Freeze{Reason: "black friday"}},
		{"api has every default", api, DefaultService("api")},
		{"api has no checks", api.SmokeChecks() == nil && api.BakeChecks() == nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !reflect.DeepEqual(tt.give, tt.want) {
				t.Errorf("got  %#v\nwant %#v", tt.give, tt.want)
			}
		})
	}
}

// checkNames lists the names of checks.
func checkNames(cs []smoke.Check) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

func TestServiceFixtureReportsEveryMistake(t *testing.T) {
	const f = "testdata/server_services_bad.hcl"
	_, err := LoadServer(f)
	ps := problemsOf(t, err)
	want := []string{
		f + `:4: service[Web]: "Web" is not allowed; use 1-63 lower-case letters, digits and '-', starting with a letter`,
		f + `:5: service[Web].min_live: 0 is too small; the minimum is 1`,
		f + `:6: service[Web].max_paralel: is not a known setting; did you mean "max_parallel"? (service[Web] takes: bake, bake_interval, bake_time, breaker, drain, failure_limit, freeze, max_parallel, min_live, schedule, smoke, standby, timeouts, window)`,
		f + `:7: service[Web].failure_limit: "150%" is not a failure limit; write a number of hosts, like "2", or a percentage of the target pool from "0%" to "100%", like "25%"`,
		f + `:8: service[Web].drain: "-1s" is negative; use "0s" or more`,
		f + `:9: service[Web].standby: "discard" is not allowed; use one of: keep, refresh`,
		f + `:12: service[Web].breaker.consecutive_failures: 0 is too small; the minimum is 1`,
		f + `:19: service[Web].smoke[health]: http settings are set but kind is "tcp"; remove them or use kind "http"`,
		f + `:24: service[Web].smoke[script]: command is empty; give the program and its arguments, like ["/usr/local/bin/check", "--quick"]`,
		f + `:26: service[Web].smoke[script].retries: "three" must be a whole number`,
		f + `:29: service[Web].bake[home]: http status 700 is out of range; use 100-599`,
		f + `:32: service[Web].bake[home].timeout: "soon" is not a duration; write a number with a unit, like "10s", "500ms" or "1m30s"`,
		f + `:33: service[Web].bake[home].headers[x-a]: "x-a" is the same header as "X-A" (names are not case-sensitive); keep one`,
		f + `:37: service[Web].schedule[nightly].cron: "CRON_TZ=Europe/Berlin 0 3 * * *" sets a time zone inside the spec; remove the CRON_TZ= or TZ= part and set time_zone instead`,
		f + `:38: service[Web].schedule[nightly].action: "deploy" is not allowed; use one of: deploy-staged, recycle`,
		f + `:42: service[Web].schedule[hourly].cron: "0 * * *" is not a cron spec (expected 5 to 6 fields, found 4: [0 * * *]); use 5 fields, minute hour day-of-month month day-of-week, like "0 3 * * *", 6 with seconds first, like "30 0 3 * * *", or a descriptor like "@daily"`,
		f + `:43: service[Web].schedule[hourly].time_zone: "Mars/Olympus" is not a known time zone; name a zone from the tz database, like "UTC" or "Europe/Berlin"`,
		f + `:48: service[Web].window[late].days[1]: "Tue" is not allowed; use one of: mon, tue, wed, thu, fri, sat, sun`,
		f + `:48: service[Web].window[late].days[2]: "mon" is listed twice; remove it or service[Web].window[late].days[0]`,
		f + `:50: service[Web].window[late].end: "01:00" is before start 22:00; a window cannot cross midnight: split it into two windows`,
		f + `:54: service[Web].window[noon].start: "12:60" is not a time of day; write "HH:MM" on a 24-hour clock, from "00:00" to "23:59"`,
		f + `:58: service[Web].freeze.reason: is not set; say why the service is frozen; it is shown when a cycle is refused`,
		f + `:65: service[api]: is defined twice (the first is at ` + f + `:62); give each service block its own name`,
	}
	if got := strings.Split(ps.Error(), "\n"); !reflect.DeepEqual(got, want) {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// validService is a service block with every default and one check of
// each list, valid as it is.
func validService() Service {
	s := DefaultService("web")
	s.Smoke = []ServiceCheck{{Name: "health", Kind: "http", Path: "/health"}}
	s.Bake = []ServiceCheck{{Name: "home", Kind: "http", Path: "/"}}
	s.Schedules = []Schedule{{Name: "nightly", Cron: "0 3 * * *", TimeZone: "UTC", Action: ActionDeployStaged, MaxDelay: "15m"}}
	s.Windows = []Window{{Name: "nights", Start: "22:00", End: "24:00", TimeZone: "UTC"}}
	return s
}

func TestServiceRules(t *testing.T) {
	const p = "service[web]"
	tests := []struct {
		name     string
		give     func(s *Service)
		wantPath string
		wantMsg  string
	}{
		{"name charset", func(s *Service) { s.Name = "web_1" }, "service[web_1]", "use 1-63 lower-case letters"},
		{"name empty", func(s *Service) { s.Name = "" }, "service[]", "use 1-63 lower-case letters"},
		{"min_live", func(s *Service) { s.MinLive = 0 }, p + ".min_live", "the minimum is 1"},
		{"max_parallel", func(s *Service) { s.MaxParallel = -1 }, p + ".max_parallel", "the minimum is 1"},
		{"failure_limit empty", func(s *Service) { s.FailureLimitSpec = "" }, p + ".failure_limit", "is not a failure limit"},
		{"failure_limit negative", func(s *Service) { s.FailureLimitSpec = "-1" }, p + ".failure_limit", "is not a failure limit"},
		{"failure_limit fraction", func(s *Service) { s.FailureLimitSpec = "1.5" }, p + ".failure_limit", "is not a failure limit"},
		{"failure_limit over 100%", func(s *Service) { s.FailureLimitSpec = "101%" }, p + ".failure_limit", `from "0%" to "100%"`},
		{"failure_limit bare %", func(s *Service) { s.FailureLimitSpec = "%" }, p + ".failure_limit", "is not a failure limit"},
		{"failure_limit space", func(s *Service) { s.FailureLimitSpec = "2 %" }, p + ".failure_limit", "is not a failure limit"},
		{"failure_limit huge", func(s *Service) { s.FailureLimitSpec = "99999999999" }, p + ".failure_limit", "is not a failure limit"},
		{"drain", func(s *Service) { s.Drain = "10" }, p + ".drain", "is not a duration"},
		{"drain negative", func(s *Service) { s.Drain = "-5s" }, p + ".drain", "is negative"},
		{"bake_time zero", func(s *Service) { s.BakeTime = "0s" }, p + ".bake_time", "must be longer than 0"},
		{"bake_interval empty", func(s *Service) { s.BakeInterval = "" }, p + ".bake_interval", "is not a duration"},
		{"standby", func(s *Service) { s.Standby = "drop" }, p + ".standby", "use one of: keep, refresh"},
		{"breaker failures", func(s *Service) { s.Breaker.ConsecutiveFailures = 0 }, p + ".breaker.consecutive_failures", "the minimum is 1"},
		{"breaker cooldown", func(s *Service) { s.Breaker.Cooldown = "0s" }, p + ".breaker.cooldown", "must be longer than 0"},
		{"preflight timeout", func(s *Service) { s.Timeouts.Preflight = "" }, p + ".timeouts.preflight", "is not a duration"},
		{"deploy timeout", func(s *Service) { s.Timeouts.Deploy = "1 hour" }, p + ".timeouts.deploy", "is not a duration"},
		{"smoke timeout", func(s *Service) { s.Timeouts.Smoke = "-1m" }, p + ".timeouts.smoke", "must be longer than 0"},
		{"switch timeout", func(s *Service) { s.Timeouts.Switch = "x" }, p + ".timeouts.switch", "is not a duration"},
		{"done timeout", func(s *Service) { s.Timeouts.Done = "0s" }, p + ".timeouts.done", "must be longer than 0"},
		{"bake timeout", func(s *Service) { s.Timeouts.Bake = "soon" }, p + ".timeouts.bake", "is not a duration"},
		{"hide not longer than drain", func(s *Service) { s.Drain, s.Timeouts.Hide = "2m", "2m" }, p + ".timeouts.hide", `is not longer than drain "2m"`},
		{"bake timeout not longer than bake_time", func(s *Service) { s.Timeouts.Bake = "30s" }, p + ".timeouts.bake", `is not longer than bake_time "30s"`},
		{"check name", func(s *Service) { s.Smoke[0].Name = "my check" }, p + ".smoke[my check]", "use 1-64 letters"},
		{"check name twice", func(s *Service) { s.Smoke = append(s.Smoke, s.Smoke[0]) }, p + ".smoke[health]", "is defined twice; give each smoke block its own name"},
		{"check without path", func(s *Service) { s.Smoke[0].Path = "" }, p + ".smoke[health]", "http path is empty"},
		{"check kind", func(s *Service) { s.Bake[0].Kind = "udp" }, p + ".bake[home]", `kind "udp" is not known`},
		{"check kind empty", func(s *Service) { s.Bake[0].Kind = "" }, p + ".bake[home]", `kind "" is not known`},
		{"tcp check with a path", func(s *Service) { s.Smoke[0].Kind = "tcp" }, p + ".smoke[health]", `http settings are set but kind is "tcp"`},
		{"command check without command", func(s *Service) { s.Smoke[0] = ServiceCheck{Name: "c", Kind: "command"} }, p + ".smoke[c]", "command is empty"},
		{"command on an http check", func(s *Service) { s.Smoke[0].Command = []string{"/bin/true"} }, p + ".smoke[health]", `command is set but kind is "http"`},
		{"check port", func(s *Service) { s.Smoke[0].Port = 70000 }, p + ".smoke[health]", "port 70000 is out of range"},
		{"check retries", func(s *Service) { s.Smoke[0].Retries = 101 }, p + ".smoke[health]", "retries 101 is out of range"},
		{"check body regexp", func(s *Service) { s.Smoke[0].BodyMatches = "(" }, p + ".smoke[health]", "does not compile"},
		{"check header name", func(s *Service) { s.Smoke[0].Headers = map[string]string{"X A": "1"} }, p + ".smoke[health]", `header name "X A" is not a valid header name`},
		{"check header twice", func(s *Service) { s.Smoke[0].Headers = map[string]string{"X-A": "1", "x-a": "1"} }, p + ".smoke[health].headers[x-a]", `is the same header as "X-A"`},
		{"check timeout", func(s *Service) { s.Smoke[0].Timeout = "5" }, p + ".smoke[health].timeout", "is not a duration"},
		{"check backoff", func(s *Service) { s.Smoke[0].BackoffInitial, s.Smoke[0].BackoffMax = "2s", "1s" }, p + ".smoke[health]", "backoff max 1s is below backoff initial 2s"},
		{"schedule name twice", func(s *Service) { s.Schedules = append(s.Schedules, s.Schedules[0]) }, p + ".schedule[nightly]", "is defined twice"},
		{"schedule cron missing", func(s *Service) { s.Schedules[0].Cron = "" }, p + ".schedule[nightly].cron", "is not set"},
		{"schedule CRON_TZ", func(s *Service) { s.Schedules[0].Cron = "CRON_TZ=UTC 0 3 * * *" }, p + ".schedule[nightly].cron", "set time_zone instead"},
		{"schedule TZ", func(s *Service) { s.Schedules[0].Cron = " TZ=UTC 0 3 * * *" }, p + ".schedule[nightly].cron", "set time_zone instead"},
		{"schedule seven fields", func(s *Service) { s.Schedules[0].Cron = "0 0 0 3 * * *" }, p + ".schedule[nightly].cron", "expected 5 to 6 fields"},
		{"schedule bad seconds", func(s *Service) { s.Schedules[0].Cron = "61 0 3 * * *" }, p + ".schedule[nightly].cron", "is not a cron spec"},
		{"schedule max_delay", func(s *Service) { s.Schedules[0].MaxDelay = "soon" }, p + ".schedule[nightly].max_delay", "is not a positive duration"},
		{"schedule max_delay zero", func(s *Service) { s.Schedules[0].MaxDelay = "0s" }, p + ".schedule[nightly].max_delay", "is not a positive duration"},
		{"schedule bad field", func(s *Service) { s.Schedules[0].Cron = "0 25 * * *" }, p + ".schedule[nightly].cron", "is not a cron spec"},
		{"schedule bad descriptor", func(s *Service) { s.Schedules[0].Cron = "@fortnightly" }, p + ".schedule[nightly].cron", "is not a cron spec"},
		{"schedule never runs", func(s *Service) { s.Schedules[0].Cron = "0 0 30 2 *" }, p + ".schedule[nightly].cron", "never runs"},
		{"schedule zone", func(s *Service) { s.Schedules[0].TimeZone = "Europe/Atlantis" }, p + ".schedule[nightly].time_zone", "is not a known time zone"},
		{"schedule zone Local", func(s *Service) { s.Schedules[0].TimeZone = "Local" }, p + ".schedule[nightly].time_zone", "can differ between servers"},
		{"schedule zone empty", func(s *Service) { s.Schedules[0].TimeZone = "" }, p + ".schedule[nightly].time_zone", "is empty"},
		{"schedule action missing", func(s *Service) { s.Schedules[0].Action = "" }, p + ".schedule[nightly].action", "is not set"},
		{"schedule action", func(s *Service) { s.Schedules[0].Action = "deploy" }, p + ".schedule[nightly].action", "use one of: deploy-staged, recycle"},
		{"schedule name", func(s *Service) { s.Schedules[0].Name = "-x" }, p + ".schedule[-x]", "use 1-64 letters"},
		{"window crosses midnight", func(s *Service) { s.Windows[0].End = "01:00" }, p + ".window[nights].end",
			"is before start 22:00; a window cannot cross midnight: split it into two windows"},
		{"window empty", func(s *Service) { s.Windows[0].End = "22:00" }, p + ".window[nights].end", "is the same as start 22:00"},
		{"window start missing", func(s *Service) { s.Windows[0].Start = "" }, p + ".window[nights].start", "is not set"},
		{"window start one digit", func(s *Service) { s.Windows[0].Start = "7:00" }, p + ".window[nights].start", "is not a time of day"},
		{"window start 24:00", func(s *Service) { s.Windows[0].Start = "24:00" }, p + ".window[nights].start", `from "00:00" to "23:59"`},
		{"window end 24:01", func(s *Service) { s.Windows[0].End = "24:01" }, p + ".window[nights].end", `or "24:00" for the end of the day`},
		{"window day", func(s *Service) { s.Windows[0].Days = []string{"monday"} }, p + ".window[nights].days[0]", "use one of: mon, tue"},
		{"window day twice", func(s *Service) { s.Windows[0].Days = []string{"sat", "sun", "sat"} }, p + ".window[nights].days[2]", "is listed twice"},
		{"window zone", func(s *Service) { s.Windows[0].TimeZone = "CEST" }, p + ".window[nights].time_zone", "is not a known time zone"},
		{"window name twice", func(s *Service) { s.Windows = append(s.Windows, s.Windows[0]) }, p + ".window[nights]", "is defined twice"},
		{"freeze without reason", func(s *Service) { s.Freeze = &Freeze{Reason: "  "} }, p + ".freeze.reason", "is not set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := validService()
			tt.give(&svc)
			s := validServer()
			s.Services = []Service{svc}
			wantOneProblem(t, s.Validate(), tt.wantPath, tt.wantMsg)
		})
	}
}

func TestServiceNamesAreUnique(t *testing.T) {
	s := validServer()
	s.Services = []Service{validService(), DefaultService("api"), validService()}
	wantOneProblem(t, s.Validate(), "service[web]", "is defined twice; give each service block its own name")
}

func TestServiceAcceptsValidVariants(t *testing.T) {
	tests := []struct {
		name string
		give func(s *Service)
	}{
		{"defaults only", func(s *Service) { *s = DefaultService("web") }},
		{"failure_limit 0%", func(s *Service) { s.FailureLimitSpec = "0%" }},
		{"failure_limit 100%", func(s *Service) { s.FailureLimitSpec = "100%" }},
		{"failure_limit count", func(s *Service) { s.FailureLimitSpec = "12" }},
		{"no drain", func(s *Service) { s.Drain = "0s" }},
		{"no drain, bare zero", func(s *Service) { s.Drain = "0" }},
		{"bake timeout set", func(s *Service) { s.Timeouts.Bake = "31s" }},
		{"descriptor", func(s *Service) { s.Schedules[0].Cron = "@daily" }},
		{"every", func(s *Service) { s.Schedules[0].Cron = "@every 6h" }},
		{"weekday names and ranges", func(s *Service) { s.Schedules[0].Cron = "30 22 * * mon-fri" }},
		{"leap day", func(s *Service) { s.Schedules[0].Cron = "0 4 29 2 *" }},
		{"zone", func(s *Service) { s.Schedules[0].TimeZone, s.Windows[0].TimeZone = "America/New_York", "Asia/Kolkata" }},
		{"window days", func(s *Service) { s.Windows[0].Days = []string{"sat", "sun"} }},
		{"window one minute", func(s *Service) { s.Windows[0].Start, s.Windows[0].End = "23:59", "24:00" }},
		{"two windows around midnight", func(s *Service) {
			s.Windows = append(s.Windows, Window{Name: "early", Start: "00:00", End: "01:00", TimeZone: "UTC"})
		}},
		{"freeze", func(s *Service) { s.Freeze = &Freeze{Reason: "release freeze"} }},
		{"all check kinds", func(s *Service) {
			s.Smoke = []ServiceCheck{
				{Name: "tcp", Kind: "tcp", Port: 9000, Timeout: "1s", Retries: 2, BackoffInitial: "100ms", BackoffMax: "1s"},
				{Name: "cmd", Kind: "command", Command: []string{"/bin/true"}},
				{Name: "http", Kind: "http", Method: "POST", Path: "/h?x=1", Status: []int{200, 301},
					Headers: map[string]string{"X-A": "1"}, BodyMatches: "ok$", MaxBodyBytes: 10},
			}
		}},
		{"same check name in smoke and bake", func(s *Service) { s.Bake[0].Name = "health" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := validService()
			tt.give(&svc)
			s := validServer()
			s.Services = []Service{svc}
			if err := s.Validate(); err != nil {
				t.Errorf("got problems:\n%v", err)
			}
		})
	}
}

func TestServiceFailureLimit(t *testing.T) {
	tests := []struct {
		give  string
		hosts int
		want  int
	}{
		{"0", 10, 0},
		{"2", 10, 2},
		{"2", 1, 1},
		{"2", 0, 0},
		{"25%", 10, 2},
		{"25%", 3, 0},
		{"25%", 4, 1},
		{"100%", 7, 7},
		{"0%", 100, 0},
		{"50%", -1, 0},
		{"bad", 10, 0},
		{"101%", 10, 0},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			s := Service{FailureLimitSpec: tt.give}
			if got := s.FailureLimit(tt.hosts); got != tt.want {
				t.Errorf("FailureLimit(%d) with %q = %d, want %d", tt.hosts, tt.give, got, tt.want)
			}
		})
	}
}

func TestServicePhaseTimeout(t *testing.T) {
	def := DefaultService("web")
	custom := DefaultService("web")
	custom.BakeTime = "10m"
	custom.Timeouts.Hide, custom.Timeouts.Done = "7m", "1h"
	broken := DefaultService("web")
	broken.Timeouts.Deploy, broken.BakeTime = "forever", "x"
	tests := []struct {
		name  string
		give  Service
		phase string
		want  time.Duration
	}{
		{"preflight default", def, "preflight", 30 * time.Second},
		{"hide default", def, "hide", 2 * time.Minute},
		{"deploy default", def, "deploy", 10 * time.Minute},
		{"smoke default", def, "smoke", 5 * time.Minute},
		{"switch default", def, "switch", 2 * time.Minute},
		{"bake default is bake_time plus 2m", def, "bake", 30*time.Second + 2*time.Minute},
		{"done default", def, "done", 10 * time.Minute},
		{"standby is done", def, "standby", 10 * time.Minute},
		{"unknown phase", def, "flip_back", 0},
		{"bake follows bake_time", custom, "bake", 12 * time.Minute},
		{"hide set", custom, "hide", 7 * time.Minute},
		{"done set", custom, "done", time.Hour},
		{"invalid value falls back", broken, "deploy", 10 * time.Minute},
		{"invalid bake_time falls back", broken, "bake", 30*time.Second + 2*time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.give.PhaseTimeout(tt.phase); got != tt.want {
				t.Errorf("PhaseTimeout(%q) = %v, want %v", tt.phase, got, tt.want)
			}
		})
	}
}

func TestWindowContains(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	weeknights := Window{Days: []string{"mon", "tue", "wed", "thu"}, Start: "22:00", End: "24:00", TimeZone: "Europe/Berlin"}
	early := Window{Start: "00:00", End: "01:30", TimeZone: "UTC"}
	tests := []struct {
		name string
		w    Window
		give time.Time
		want bool
	}{
		{"monday 22:00 Berlin, winter", weeknights, time.Date(2026, 1, 5, 21, 0, 0, 0, time.UTC), true},
		{"monday 21:59 Berlin", weeknights, time.Date(2026, 1, 5, 21, 59, 0, 0, berlin), false},
		{"monday 23:59 Berlin", weeknights, time.Date(2026, 1, 5, 23, 59, 59, 0, berlin), true},
		{"tuesday 00:00 Berlin is outside", weeknights, time.Date(2026, 1, 6, 0, 0, 0, 0, berlin), false},
		{"monday 22:30 Berlin, summer (20:30 UTC)", weeknights, time.Date(2026, 7, 6, 20, 30, 0, 0, time.UTC), true},
		{"monday 22:30 UTC is tuesday 00:30 Berlin", weeknights, time.Date(2026, 7, 6, 22, 30, 0, 0, time.UTC), false},
		{"friday 22:30 Berlin", weeknights, time.Date(2026, 1, 9, 22, 30, 0, 0, berlin), false},
		{"every day 00:00", early, time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), true},
		{"every day 01:29", early, time.Date(2026, 3, 1, 1, 29, 0, 0, time.UTC), true},
		{"end excluded", early, time.Date(2026, 3, 1, 1, 30, 0, 0, time.UTC), false},
		{"zone converted", early, time.Date(2026, 3, 1, 1, 0, 0, 0, berlin), true},
		{"invalid window", Window{Start: "22:00", End: "01:00"}, time.Date(2026, 3, 1, 23, 0, 0, 0, time.UTC), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.w.Contains(tt.give); got != tt.want {
				t.Errorf("Contains(%v) = %v, want %v", tt.give, got, tt.want)
			}
		})
	}
}

func TestServiceInWindow(t *testing.T) {
	at := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC) // a Monday
	lunch := Window{Start: "11:00", End: "13:00", TimeZone: "UTC"}
	night := Window{Start: "22:00", End: "24:00", TimeZone: "UTC"}
	tests := []struct {
		name string
		give []Window
		want bool
	}{
		{"no windows: any time", nil, true},
		{"inside one", []Window{night, lunch}, true},
		{"outside all", []Window{night}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Service{Windows: tt.give}
			if got := s.InWindow(at); got != tt.want {
				t.Errorf("InWindow = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestScheduleCronSchedule(t *testing.T) {
	tests := []struct {
		name string
		give Schedule
		from time.Time
		want time.Time
	}{
		{"03:00 Berlin in winter", Schedule{Cron: "0 3 * * *", TimeZone: "Europe/Berlin"},
			time.Date(2026, 1, 10, 0, 0, 0, 0, time.UTC), time.Date(2026, 1, 10, 2, 0, 0, 0, time.UTC)},
		{"03:00 Berlin in summer", Schedule{Cron: "0 3 * * *", TimeZone: "Europe/Berlin"},
			time.Date(2026, 7, 10, 0, 0, 0, 0, time.UTC), time.Date(2026, 7, 10, 1, 0, 0, 0, time.UTC)},
		{"UTC", Schedule{Cron: "30 22 * * mon-fri", TimeZone: "UTC"},
			time.Date(2026, 3, 7, 0, 0, 0, 0, time.UTC), time.Date(2026, 3, 9, 22, 30, 0, 0, time.UTC)},
		{"descriptor in zone", Schedule{Cron: "@daily", TimeZone: "Asia/Tokyo"},
			time.Date(2026, 3, 7, 0, 0, 0, 0, time.UTC), time.Date(2026, 3, 7, 15, 0, 0, 0, time.UTC)},
		{"seconds field", Schedule{Cron: "*/20 * * * * *", TimeZone: "UTC"},
			time.Date(2026, 3, 7, 0, 0, 5, 0, time.UTC), time.Date(2026, 3, 7, 0, 0, 20, 0, time.UTC)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sched, err := tt.give.CronSchedule()
			if err != nil {
				t.Fatal(err)
			}
			if got := sched.Next(tt.from); !got.Equal(tt.want) {
				t.Errorf("Next(%v) = %v, want %v", tt.from, got.UTC(), tt.want)
			}
		})
	}
	for _, bad := range []string{"CRON_TZ=UTC 0 3 * * *", "0 3 * *"} {
		if _, err := (Schedule{Name: "x", Cron: bad, TimeZone: "UTC"}).CronSchedule(); err == nil {
			t.Errorf("CronSchedule(%q): want an error", bad)
		}
	}
}

func TestServiceBlockDefaults(t *testing.T) {
	src := serverHead + `
service "web" {
  breaker {
    cooldown = "1h"
  }
  timeouts {
    deploy = "30m"
  }
  smoke "h" {
    path = "/"
  }
  schedule "s" {
    cron   = "@daily"
    action = "recycle"
  }
  window "w" {
    start = "01:00"
    end   = "02:00"
  }
}
`
	s, err := ParseServer("server.hcl", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(); err != nil {
		t.Fatalf("problems:\n%v", err)
	}
	got := s.Services[0]
	want := DefaultService("web")
	want.Breaker.Cooldown = "1h"
	want.Timeouts.Deploy = "30m"
	want.Smoke = []ServiceCheck{{Name: "h", Kind: "http", Path: "/"}}
	want.Schedules = []Schedule{{Name: "s", Cron: "@daily", TimeZone: "UTC", Action: ActionRecycle, MaxDelay: "15m"}}
	want.Windows = []Window{{Name: "w", Start: "01:00", End: "02:00", TimeZone: "UTC"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

func TestServiceMapAndListSettings(t *testing.T) {
	tests := []struct {
		name     string
		give     string
		wantPos  string
		wantPath string
		wantMsg  string
	}{
		{"repeated header", "headers = {\n  X-A = \"1\"\n  \"X-A\" = \"2\"\n}", "f.hcl:5", "service[web].smoke[h].headers[X-A]", "is set twice (the first is at f.hcl:4)"},
		{"computed key", "headers = { (x) = \"1\" }", "f.hcl:3", "service[web].smoke[h].headers", "map keys must be names or strings"},
		{"template key", "headers = { \"X-${x}\" = \"1\" }", "f.hcl:3", "service[web].smoke[h].headers", "string templates"},
		{"reference value", "headers = { a = var.x }", "f.hcl:3", "service[web].smoke[h].headers", "variables and references are not supported"},
		{"nested object", "headers = { a = { b = \"c\" } }", "f.hcl:3", "service[web].smoke[h].headers", "expressions are not supported"},
		{"string for map", "headers = \"X-A: 1\"", "f.hcl:3", "service[web].smoke[h].headers", `must be a map of strings, like { "X-Name" = "value" }`},
		{"list for map", "headers = [\"X-A\"]", "f.hcl:3", "service[web].smoke[h].headers", "must be a map of strings"},
		{"string in status", "status = [\"ok\"]", "f.hcl:3", "service[web].smoke[h].status", "must be a list of whole numbers, like [200, 204]"},
		{"number for status", "status = 200", "f.hcl:3", "service[web].smoke[h].status", "must be a list of whole numbers"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := "service \"web\" {\n  smoke \"h\" {\n" + tt.give + "\n  }\n}\n"
			_, err := ParseServer("f.hcl", []byte(src))
			ps := problemsOf(t, err)
			if len(ps) != 1 {
				t.Fatalf("got %d problems, want 1:\n%v", len(ps), err)
			}
			if p := ps[0]; p.Pos != tt.wantPos || p.Path != tt.wantPath || !strings.Contains(p.Msg, tt.wantMsg) {
				t.Errorf("got %q\nwant pos %q, path %q, message containing %q", p, tt.wantPos, tt.wantPath, tt.wantMsg)
			}
		})
	}
}

func TestServiceMapSettingForms(t *testing.T) {
	src := serverHead + `
service "web" {
  smoke "h" {
    path    = "/"
    headers = {
      Content-Type   = "text/html"
      "X-Request-Id" = "abc"
      X-Count        = 3
    }
  }
  smoke "empty" {
    path    = "/"
    headers = {}
  }
}
`
	s, err := ParseServer("server.hcl", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(); err != nil {
		t.Fatalf("problems:\n%v", err)
	}
	want := map[string]string{"Content-Type": "text/html", "X-Request-Id": "abc", "X-Count": "3"}
	if got := s.Services[0].Smoke[0].Headers; !reflect.DeepEqual(got, want) {
		t.Errorf("headers = %#v, want %#v", got, want)
	}
	if got := s.Services[0].Smoke[1].Headers; got == nil || len(got) != 0 {
		t.Errorf("empty headers = %#v, want an empty map", got)
	}
}

func TestSmokeCheckDoesNotShareSlices(t *testing.T) {
	c := ServiceCheck{Name: "h", Kind: "http", Path: "/", Status: []int{200}, Headers: map[string]string{"A": "1"}, Command: nil}
	got := c.SmokeCheck()
	got.HTTP.Status[0] = 500
	got.HTTP.Headers["A"] = "2"
	if c.Status[0] != 200 || c.Headers["A"] != "1" {
		t.Errorf("changing the smoke check changed the block: %+v", c)
	}
}
