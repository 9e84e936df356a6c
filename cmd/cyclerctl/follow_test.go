package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/cyclerhq/cycler/api"
	"github.com/cyclerhq/cycler/cycle"
	"github.com/cyclerhq/cycler/smoke"
)

var (
	t0         = time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC)
	digest     = "sha256:" + strings.Repeat("ab", 32)
	prevDigest = "sha256:" + strings.Repeat("cd", 32)
)

// startFake serves the routes on an api.Server (the real auth and error
// envelope) behind httptest, and returns its URL.
func startFake(t *testing.T, routes func(s *api.Server)) string {
	t.Helper()
	srv, err := api.New(api.Config{Addr: "127.0.0.1:0", NodeName: "fake", Logger: zap.NewNop(),
		Tokens: []api.Token{{Name: "ops", Secret: testToken, Scopes: []api.Scope{api.ScopeOperator}}}})
	if err != nil {
		t.Fatal(err)
	}
	routes(srv)
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return ts.URL
}

// baseCycle is cycle web-3: web 1.2.2 on blue to 1.2.3 on green, two hosts.
func baseCycle() cycle.Cycle {
	return cycle.Cycle{ID: "web-3", Service: "web", Kind: cycle.KindDeploy, Trigger: "manual", By: "ops",
		Package: cycle.Release{Version: "1.2.3", Digest: digest}, Previous: cycle.Release{Version: "1.2.2", Digest: prevDigest},
		From: "blue", Target: "green", BaseGeneration: 4, CreatedAt: t0,
		Hosts: []cycle.Host{{Instance: "web-green-1", Pool: "green"}, {Instance: "web-green-2", Pool: "green"}}}
}

// script returns the revisions of baseCycle passing through phases, rev 1
// to n, one second apart. change, if not nil, edits each revision after its
// phase is set, so a test can record host results.
func script(change func(c *cycle.Cycle), phases ...cycle.Phase) []cycle.Cycle {
	var out []cycle.Cycle
	c := baseCycle()
	for i, p := range phases {
		at := t0.Add(time.Duration(i) * time.Second)
		if n := len(c.Phases); n > 0 {
			c.Phases[n-1].End = at
		}
		c.Phases = append(c.Phases, cycle.Span{Phase: p, Start: at})
		c.Rev, c.Phase, c.UpdatedAt, c.Message = uint64(i+1), p, at, "in "+string(p)
		if p.Terminal() {
			c.FinishedAt = at
		}
		if change != nil {
			change(&c)
		}
		out = append(out, c.Clone())
	}
	return out
}

// smokeFails makes web-green-2 fail its smoke check.
func smokeFails(c *cycle.Cycle) {
	if c.Phase != cycle.Smoke {
		return
	}
	c.Hosts[0].Smoke = &cycle.Step{OK: true, StartedAt: t0, FinishedAt: t0.Add(time.Second)}
	c.Hosts[1].Failed = true
	c.Hosts[1].Smoke = &cycle.Step{Error: "1 of 1 checks failed", StartedAt: t0, FinishedAt: t0.Add(3 * time.Second)}
	c.Hosts[1].Checks = []smoke.CheckResult{{Name: "http", Attempts: 3, Error: "status 500, want 200"}}
}

var (
	deployDone       = []cycle.Phase{cycle.Preflight, cycle.Hide, cycle.Deploy, cycle.Smoke, cycle.Switch, cycle.Bake, cycle.Standby, cycle.Done}
	deployAborted    = []cycle.Phase{cycle.Preflight, cycle.Hide, cycle.Deploy, cycle.Smoke, cycle.Aborted}
	deployRolledBack = []cycle.Phase{cycle.Preflight, cycle.Hide, cycle.Deploy, cycle.Smoke, cycle.Switch, cycle.Bake, cycle.FlipBack, cycle.RolledBack}
)

// fakeCycles is the cycle API for one scripted cycle: a start (deploy or
// rollback) answers script[0] or a refusal, and the events stream plays the
// rest of the script.
type fakeCycles struct {
	script []cycle.Cycle
	// refuse, when set, is the message of a 409 refused answer to starts.
	refuse string
	// notLeader is how many events requests are answered not_leader first.
	notLeader int
	// dropAfter cuts the first events stream after the line of this rev.
	dropAfter uint64
	// hang keeps the stream open after the script, until the client leaves.
	hang bool
	// unavailable is how many starts are answered unavailable first.
	unavailable int

	mu        sync.Mutex
	starts    []cycle.StartRequest
	rollbacks []string
	eventRevs []uint64
	streams   int
}

func (f *fakeCycles) routes(s *api.Server) {
	s.Handle("POST /v1/cycles", api.ScopeOperator, func(w http.ResponseWriter, r *http.Request) error {
		var req cycle.StartRequest
		if err := api.DecodeJSON(r, &req); err != nil {
			return err
		}
		f.mu.Lock()
		f.starts = append(f.starts, req)
		busy := len(f.starts) <= f.unavailable
		f.mu.Unlock()
		if busy {
			return api.Unavailable("no leader is elected right now")
		}
		return f.answerStart(w)
	})
	s.Handle("POST /v1/services/{service}/rollback", api.ScopeOperator, func(w http.ResponseWriter, r *http.Request) error {
		var req cycle.RollbackRequest
		if err := api.DecodeJSON(r, &req); err != nil {
			return err
		}
		f.mu.Lock()
		f.rollbacks = append(f.rollbacks, r.PathValue("service")+" force="+strconv.FormatBool(req.Force)+" id="+strconv.FormatBool(req.RequestID != ""))
		f.mu.Unlock()
		return f.answerStart(w)
	})
	s.Handle("GET /v1/cycles/{id}/events", api.ScopeOperator, f.events, api.WithoutTimeouts())
}

func (f *fakeCycles) answerStart(w http.ResponseWriter) error {
	if f.refuse != "" {
		return api.Refused("%s", f.refuse)
	}
	return api.WriteJSON(w, http.StatusCreated, f.script[0])
}

func (f *fakeCycles) events(w http.ResponseWriter, r *http.Request) error {
	if id := r.PathValue("id"); id != f.script[0].ID {
		return api.NotFound("no cycle %q", id)
	}
	rev, err := strconv.ParseUint(r.URL.Query().Get("rev"), 10, 64)
	if err != nil {
		return api.BadRequest("rev %q is not a number", r.URL.Query().Get("rev"))
	}
	f.mu.Lock()
	f.eventRevs = append(f.eventRevs, rev)
	refuse := len(f.eventRevs) <= f.notLeader
	if !refuse {
		f.streams++
	}
	first := f.streams == 1
	f.mu.Unlock()
	if refuse {
		return api.NotLeader("")
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	fl := w.(http.Flusher)
	fl.Flush()
	enc := json.NewEncoder(w)
	for _, c := range f.script {
		if c.Rev <= rev {
			continue
		}
		if err := enc.Encode(c); err != nil {
			return nil // the client left
		}
		fl.Flush()
		if first && c.Rev == f.dropAfter {
			panic(http.ErrAbortHandler) // cut the connection mid-stream
		}
	}
	if f.hang {
		<-r.Context().Done()
	}
	return nil
}

func (f *fakeCycles) revs() []uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.eventRevs)
}

func (f *fakeCycles) startsSeen() []cycle.StartRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.starts)
}

func (f *fakeCycles) rollbacksSeen() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.rollbacks)
}

func TestProgressLine(t *testing.T) {
	four := baseCycle()
	four.Phase = cycle.Smoke
	four.Hosts = []cycle.Host{{Smoke: &cycle.Step{OK: true}}, {Smoke: &cycle.Step{OK: true}}, {Smoke: &cycle.Step{}, Failed: true}, {}}
	paused := four
	paused.Paused, paused.AbortRequested = true, "bad build"
	empty := baseCycle()
	empty.Phase, empty.Hosts = cycle.Preflight, nil
	tests := []struct {
		name    string
		give    cycle.Cycle
		elapsed time.Duration
		want    string
	}{
		{name: "smoke", give: four, elapsed: 12400 * time.Millisecond, want: "[web-3] smoke  ███████░░░ 3/4 hosts  failures 1  12s"},
		{name: "paused", give: paused, elapsed: 65 * time.Second, want: "[web-3] smoke  ███████░░░ 3/4 hosts  failures 1  1m5s  paused  abort requested"},
		{name: "no hosts", give: empty, want: "[web-3] preflight  ░░░░░░░░░░ 0/0 hosts  failures 0  0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := progressLine(tt.give, tt.elapsed); got != tt.want {
				t.Errorf("progressLine\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestBar(t *testing.T) {
	tests := []struct {
		done, total int
		want        string
	}{
		{0, 4, "░░░░"}, {1, 4, "█░░░"}, {3, 4, "███░"}, {4, 4, "████"}, {5, 4, "████"}, {0, 0, "░░░░"}, {1, 3, "█░░░"},
	}
	for _, tt := range tests {
		if got := bar(tt.done, tt.total, 4); got != tt.want {
			t.Errorf("bar(%d, %d) = %q, want %q", tt.done, tt.total, got, tt.want)
		}
	}
}

func TestPlainLine(t *testing.T) {
	c := script(smokeFails, deployAborted...)[3]
	c.UpdatedAt = time.Date(2026, 3, 4, 12, 0, 1, 0, time.UTC)
	held := c
	held.Paused, held.AbortRequested, held.Message = true, "wrong build", `say "hi"`
	tests := []struct {
		name string
		give cycle.Cycle
		want string
	}{
		{name: "smoke", give: c, want: `12:00:01 web-3 phase=smoke hosts=2/2 failures=1 message="in smoke"`},
		{name: "held", give: held, want: `12:00:01 web-3 phase=smoke hosts=2/2 failures=1 paused=true abort_requested="wrong build" message="say \"hi\""`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := plainLine(tt.give, time.UTC); got != tt.want {
				t.Errorf("plainLine\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestSummary(t *testing.T) {
	recycle := script(nil, cycle.Preflight, cycle.Hide, cycle.Deploy, cycle.Smoke, cycle.Done)
	rc := recycle[len(recycle)-1]
	rc.Kind = cycle.KindRecycle
	first := script(nil, cycle.Preflight, cycle.Aborted)[1]
	first.From, first.Previous = "", cycle.Release{}
	tests := []struct {
		name string
		give cycle.Cycle
		want []string
	}{
		{name: "done", give: last(script(nil, deployDone...)), want: []string{
			"web-3 done: web 1.2.3 is live on the green pool\n",
			"  message   in done\n",
			"  pools     blue (1.2.2) -> green (1.2.3), green live\n",
			"  phases    preflight 1s, hide 1s, deploy 1s, smoke 1s, switch 1s, bake 1s, standby 1s; total 7s\n",
			"exit 0\n"}},
		{name: "aborted", give: last(script(smokeFails, deployAborted...)), want: []string{
			"web-3 aborted before the switch: web 1.2.3 never went live; the blue pool (1.2.2) is live\n",
			"  pools     blue (1.2.2) -> green (1.2.3), blue live\n",
			"  failed    web-green-2: smoke: 1 of 1 checks failed; check http failed after 3 attempts: status 500, want 200\n",
			"exit 3\n"}},
		{name: "rolled back", give: last(script(nil, deployRolledBack...)), want: []string{
			"web-3 rolled back: web 1.2.3 went live on the green pool and was undone; the blue pool (1.2.2) is live\n",
			"flip_back 1s; total 7s\n",
			"exit 4\n"}},
		{name: "recycle", give: rc, want: []string{"web-3 done: the green pool is refreshed to web 1.2.3; the blue pool stays live\n", "blue live\n"}},
		{name: "first deploy aborted", give: first, want: []string{"never went live; no pool is live\n", "  pools     none -> green (1.2.3), no pool live\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			writeSummary(&b, tt.give)
			for _, w := range tt.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("summary lacks %q:\n%s", w, b.String())
				}
			}
		})
	}
}

func last(s []cycle.Cycle) cycle.Cycle { return s[len(s)-1] }

func TestOutcomeAndExitCodes(t *testing.T) {
	ended := func(p cycle.Phase) cycle.Cycle {
		c := baseCycle()
		c.Phase, c.Message = p, "why"
		return c
	}
	tests := []struct {
		name     string
		give     error
		wantCode int
		wantMsg  string
	}{
		{name: "nil", give: nil, wantCode: 0},
		{name: "done", give: outcomeError(ended(cycle.Done)), wantCode: 0},
		{name: "aborted", give: outcomeError(ended(cycle.Aborted)), wantCode: 3, wantMsg: "cycle web-3 aborted before the switch: why"},
		{name: "rolled back", give: outcomeError(ended(cycle.RolledBack)), wantCode: 4, wantMsg: "cycle web-3 rolled back after the switch: why"},
		{name: "not terminal", give: outcomeError(ended(cycle.Bake)), wantCode: 1, wantMsg: `phase "bake", which does not end`},
		{name: "wrapped exit error", give: fmt.Errorf("x: %w", &exitError{code: 4, err: errors.New("y")}), wantCode: 4, wantMsg: "x: y"},
		{name: "refused start", give: startError("deploy", api.Refused("breaker open until 12:05")), wantCode: 2,
			wantMsg: "deploy refused, nothing changed: breaker open until 12:05"},
		{name: "bare refusal", give: fmt.Errorf("z: %w", api.Refused("frozen")), wantCode: 2, wantMsg: "z: refused: frozen"},
		{name: "not found", give: startError("deploy", api.NotFound("no package")), wantCode: 1, wantMsg: "deploy: not_found: no package"},
		{name: "other", give: errors.New("boom"), wantCode: 1, wantMsg: "boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := exitCode(tt.give); got != tt.wantCode {
				t.Errorf("exitCode = %d, want %d", got, tt.wantCode)
			}
			if tt.give != nil && !strings.Contains(tt.give.Error(), tt.wantMsg) {
				t.Errorf("error %q lacks %q", tt.give, tt.wantMsg)
			}
		})
	}
}

func TestReconnectable(t *testing.T) {
	tests := []struct {
		name string
		give error
		want bool
	}{
		{name: "not leader", give: api.NotLeader(""), want: true},
		{name: "unavailable", give: fmt.Errorf("x: %w", api.Unavailable("no leader")), want: true},
		{name: "cut", give: errors.New("reading the events stream: unexpected EOF"), want: true},
		{name: "not found", give: api.NotFound("no cycle"), want: false},
		{name: "unauthorized", give: api.Unauthorized("bad token"), want: false},
		{name: "garbage", give: fmt.Errorf("x: %w", &json.SyntaxError{}), want: false},
	}
	for _, tt := range tests {
		if got := reconnectable(tt.give); got != tt.want {
			t.Errorf("%s: reconnectable = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for the progress ticker and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestTTYProgress(t *testing.T) {
	var mu sync.Mutex
	now := t0
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}
	var out, errOut syncBuffer
	p := newTTYProgress(&out, &errOut, clock, time.Hour)
	mu.Lock()
	now = now.Add(12 * time.Second)
	mu.Unlock()
	c := baseCycle()
	c.Phase = cycle.Smoke
	c.Hosts = []cycle.Host{{Smoke: &cycle.Step{OK: true}}, {Smoke: &cycle.Step{OK: true}}, {Smoke: &cycle.Step{OK: true}}, {}}
	p.update(c)
	p.note("events of cycle web-3: cut; reconnecting")
	p.stop()
	want := "\r[web-3] smoke  ███████░░░ 3/4 hosts  failures 0  12s\x1b[K"
	if got := out.String(); !strings.HasPrefix(got, want) || !strings.HasSuffix(got, "\x1b[K\n") || !strings.Contains(got, "\r\x1b[K"+want) {
		t.Errorf("tty output %q, want redraws of %q, a cleared line before the note, and a final newline", got, want)
	}
	if got := errOut.String(); got != "note: events of cycle web-3: cut; reconnecting\n" {
		t.Errorf("tty notes %q", got)
	}
}

func TestIsTerminal(t *testing.T) {
	if isTerminal(&bytes.Buffer{}) {
		t.Error("a buffer is not a terminal")
	}
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if isTerminal(f) {
		t.Error("a regular file is not a terminal")
	}
}

func TestShortDuration(t *testing.T) {
	tests := []struct {
		give time.Duration
		want string
	}{
		{0, "0s"}, {20 * time.Millisecond, "20ms"}, {1234 * time.Millisecond, "1.2s"}, {12600 * time.Millisecond, "13s"}, {103 * time.Second, "1m43s"},
	}
	for _, tt := range tests {
		if got := shortDuration(tt.give); got != tt.want {
			t.Errorf("shortDuration(%s) = %q, want %q", tt.give, got, tt.want)
		}
	}
}
