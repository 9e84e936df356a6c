package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/cyclerhq/cycler/api"
	"github.com/cyclerhq/cycler/client"
	"github.com/cyclerhq/cycler/cycle"
)

// Reconnect backoff of the events stream: it starts short because a leader
// change takes about a second, and is capped so a long outage is noticed
// soon after it ends.
const (
	reconnectMin = 200 * time.Millisecond
	reconnectMax = 5 * time.Second
)

// streamIdle is how long the events stream may stay silent before the
// server is taken for dead and another one is tried. Servers send the
// cycle again every 10 s when nothing changed (a heartbeat), so silence
// this long means a hung server or a network that dropped the connection
// without a reset, which a plain read would wait on forever.
const streamIdle = 35 * time.Second

// barWidth is the number of cells in the TTY progress bar.
const barWidth = 10

// cycleContext applies --timeout to a command that waits for a cycle
// (deploy, rollback). Elsewhere --timeout bounds each API request; here,
// when given explicitly, it bounds the whole command: push, start and the
// wait for the cycle to end, and 0 means no limit. When it is not given the
// command waits as long as the cycle runs, because the 30s default is far
// shorter than a deploy. Each request keeps its own limit of --timeout (or
// client.DefaultTimeout when --timeout is 0 or not given). The returned
// function releases the deadline.
func (g *globals) cycleContext(cmd *cobra.Command) (context.CancelFunc, error) {
	d, err := time.ParseDuration(g.timeout)
	if err != nil || d < 0 {
		return nil, fmt.Errorf("--timeout %q is not a duration; use 0 for no limit or a value like 30m", g.timeout)
	}
	if d == 0 {
		g.timeout = client.DefaultTimeout.String()
	}
	if f := cmd.Flags().Lookup("timeout"); f == nil || !f.Changed || d == 0 {
		return func() {}, nil
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), d)
	cmd.SetContext(ctx)
	return cancel, nil
}

// awaitCycle waits for the cycle started to end, showing its progress when
// follow is set, then prints the outcome (a summary, or the final cycle
// with --json). The returned error carries the exit code of the outcome:
// nil when the new version is live.
func (g *globals) awaitCycle(cmd *cobra.Command, started cycle.Cycle, follow bool) error {
	c, err := g.client()
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Fprintf(g.stderr, "cycle %s started (%s %s of %s to the %s pool); waiting for it to end, Ctrl-C stops waiting but not the cycle\n",
		started.ID, started.Kind, orDash(started.Package.Version), started.Service, started.Target)
	p := g.newProgress(follow)
	p.update(started)
	f := follower{clients: append([]*client.Client{c}, g.peerClients(cmd.Context(), c)...), progress: p, idle: streamIdle}
	defer f.close()
	final, err := f.wait(cmd.Context(), started)
	p.stop()
	if err != nil {
		return g.waitError(final, err)
	}
	if g.json {
		if err := g.printJSON(final); err != nil {
			return err
		}
	} else {
		writeSummary(g.stdout, final)
	}
	return outcomeError(final)
}

// waitError explains why the wait for cycle cur stopped before its end, and
// how to find out how it ends.
func (g *globals) waitError(cur cycle.Cycle, err error) error {
	see := fmt.Sprintf("see it with `cyclerctl history --cycle %s`, stop it with `cyclerctl abort %s`", cur.ID, cur.ID)
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("gave up waiting for cycle %s after --timeout %s: it is still running, in phase %s; %s "+
			"(use --timeout 0 to wait without a limit)", cur.ID, g.timeout, cur.Phase, see)
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("stopped waiting for cycle %s in phase %s; it goes on in the cluster: %s", cur.ID, cur.Phase, see)
	}
	return fmt.Errorf("following cycle %s (last seen in phase %s): %w; it may still be running: %s", cur.ID, cur.Phase, err, see)
}

// outcomeError turns a finished cycle into the error that carries its exit
// code (cycle.ExitCode): nil when the new version is live.
func outcomeError(c cycle.Cycle) error {
	code := cycle.ExitCode(c.Phase)
	switch c.Phase {
	case cycle.Done:
		return nil
	case cycle.Aborted:
		return &exitError{code: code, err: fmt.Errorf("cycle %s aborted before the switch: %s", c.ID, orDash(c.Message))}
	case cycle.RolledBack:
		return &exitError{code: code, err: fmt.Errorf("cycle %s rolled back after the switch: %s", c.ID, orDash(c.Message))}
	}
	return &exitError{code: code, err: fmt.Errorf("cycle %s is in phase %q, which does not end a cycle", c.ID, c.Phase)}
}

// peerClients returns clients for the other servers of the cluster, as
// the one behind c lists them, so a follow can go on when that server dies.
// It is best effort: without an answer, following uses c alone.
func (g *globals) peerClients(ctx context.Context, c *client.Client) []*client.Client {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	var ms api.Members
	if err := c.Do(ctx, http.MethodGet, "/v1/cluster/members", nil, &ms); err != nil {
		return nil
	}
	var out []*client.Client
	for _, m := range ms.Members {
		if m.APIAddr == "" || m.ID == ms.AnsweredBy {
			continue
		}
		if pc, err := g.clientAt(m.APIAddr); err == nil && pc.Addr() != c.Addr() {
			out = append(out, pc)
		}
	}
	return out
}

// follower follows a cycle's events stream until the cycle ends. It reads
// from clients[cur] and moves to the next server after a failed or silent
// connection; every server answers from its own replica, so any of them can
// carry on from the last revision seen.
type follower struct {
	clients  []*client.Client
	cur      int
	progress progress
	// idle is how long a stream may stay silent; 0 means no limit.
	idle time.Duration
}

// close releases the clients of the other servers (the first one is the
// caller's).
func (f *follower) close() {
	for _, c := range f.clients[1:] {
		c.Close()
	}
}

// errSilent marks a stream that sent nothing, not even a heartbeat, for
// longer than follower.idle.
var errSilent = errors.New("no event or heartbeat")

// wait follows cycle cur from its revision until it reaches a terminal
// phase and returns the last revision seen. A dropped connection, a stream
// that ends early or a not_leader/unavailable answer is retried with
// backoff from the last revision seen, until ctx ends; any other API error
// ends the wait.
func (f *follower) wait(ctx context.Context, cur cycle.Cycle) (cycle.Cycle, error) {
	wait := reconnectMin
	for !cur.Phase.Terminal() {
		before := cur.Rev
		err := f.stream(ctx, &cur)
		if cur.Phase.Terminal() {
			break
		}
		if ctx.Err() != nil {
			return cur, ctx.Err()
		}
		if err != nil && !reconnectable(err) {
			return cur, err
		}
		if cur.Rev > before {
			// The stream delivered something, so the server is fine again.
			wait = reconnectMin
		}
		why := "the server ended the stream before the cycle ended"
		if err != nil {
			why = err.Error()
			// Another server may well be fine: try the next one.
			f.cur = (f.cur + 1) % len(f.clients)
		}
		f.progress.note(fmt.Sprintf("events of cycle %s: %s; reconnecting from rev %d to %s in %s",
			cur.ID, why, cur.Rev, f.clients[f.cur].Addr(), wait))
		select {
		case <-ctx.Done():
			return cur, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(wait*2, reconnectMax)
	}
	return cur, nil
}

// stream reads one connection of the events stream into cur, reporting
// each new revision. It returns nil when the stream ends cleanly.
func (f *follower) stream(ctx context.Context, cur *cycle.Cycle) error {
	path := fmt.Sprintf("/v1/cycles/%s/events?rev=%d", url.PathEscape(cur.ID), cur.Rev)
	c := f.clients[f.cur]
	resp, err := c.DoRaw(ctx, http.MethodGet, path, nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	// A watchdog closes the body when the stream stays silent for idle,
	// which ends the Decode below; silent tells that apart from a cut.
	var silent atomic.Bool
	alive := func() {}
	if f.idle > 0 {
		watchdog := time.AfterFunc(f.idle, func() { silent.Store(true); resp.Body.Close() })
		defer watchdog.Stop()
		alive = func() { watchdog.Reset(f.idle) }
	}
	dec := json.NewDecoder(resp.Body)
	for {
		var next cycle.Cycle
		if err := dec.Decode(&next); err != nil {
			if silent.Load() {
				return fmt.Errorf("%w from cyclerd at %s for %s", errSilent, c.Addr(), f.idle)
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("reading the events stream: %w", err)
		}
		alive()
		if next.Rev <= cur.Rev {
			continue // already seen, for example before a reconnect
		}
		*cur = next
		f.progress.update(next)
		if next.Phase.Terminal() {
			return nil
		}
	}
}

// reconnectable reports whether following may go on after err: the server
// is electing a leader, or the connection failed or was cut. An API answer
// such as not_found or unauthorized, or a line that is not a cycle, will not
// change by asking again.
func reconnectable(err error) bool {
	var (
		apiErr    *api.Error
		syntaxErr *json.SyntaxError
		typeErr   *json.UnmarshalTypeError
	)
	switch {
	case retryable(err):
		return true
	case errors.As(err, &apiErr), errors.As(err, &syntaxErr), errors.As(err, &typeErr):
		return false
	}
	return true
}

// progress shows a cycle's revisions while cyclerctl waits for it.
type progress interface {
	// update shows a new revision.
	update(c cycle.Cycle)
	// note shows a message about the wait itself, such as a reconnect.
	note(msg string)
	// stop ends the display; call it once, before printing anything else.
	stop()
}

// newProgress picks the display: nothing but notes without --follow, a
// redrawn line on a terminal, else one line per change (on stderr with
// --json, so stdout stays one JSON document).
func (g *globals) newProgress(follow bool) progress {
	switch {
	case !follow:
		return quietProgress{stderr: g.stderr}
	case g.json:
		return &plainProgress{w: g.stderr, stderr: g.stderr, loc: time.Local}
	case isTerminal(g.stdout):
		return newTTYProgress(g.stdout, g.stderr, time.Now, time.Second)
	}
	return &plainProgress{w: g.stdout, stderr: g.stderr, loc: time.Local}
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// quietProgress shows only notes.
type quietProgress struct{ stderr io.Writer }

func (quietProgress) update(cycle.Cycle) {}
func (q quietProgress) note(msg string)  { fmt.Fprintln(q.stderr, "note:", msg) }
func (quietProgress) stop()              {}

// plainProgress prints one line per visible change, for pipes and logs.
type plainProgress struct {
	w, stderr io.Writer
	loc       *time.Location
	last      string
}

func (p *plainProgress) update(c cycle.Cycle) {
	// Revisions that change nothing shown (an LB ack, a bake round) would
	// only repeat the previous line.
	if f := plainFields(c); f != p.last {
		p.last = f
		fmt.Fprintln(p.w, plainLine(c, p.loc))
	}
}
func (p *plainProgress) note(msg string) { fmt.Fprintln(p.stderr, "note:", msg) }
func (p *plainProgress) stop()           {}

// ttyProgress redraws one line with \r, every tick as well as on changes,
// so the elapsed time moves while a phase such as bake runs.
type ttyProgress struct {
	w, stderr io.Writer
	now       func() time.Time
	start     time.Time
	stopc     chan struct{}
	done      chan struct{}

	mu  sync.Mutex // guards cur and writes to w, shared with the ticker
	cur *cycle.Cycle
}

// newTTYProgress starts the ticker that redraws the line every tick.
func newTTYProgress(w, stderr io.Writer, now func() time.Time, tick time.Duration) *ttyProgress {
	p := &ttyProgress{w: w, stderr: stderr, now: now, start: now(), stopc: make(chan struct{}), done: make(chan struct{})}
	go p.tick(tick)
	return p
}

func (p *ttyProgress) tick(every time.Duration) {
	defer close(p.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-p.stopc:
			return
		case <-t.C:
			p.mu.Lock()
			p.draw()
			p.mu.Unlock()
		}
	}
}

// draw rewrites the line; \x1b[K clears what a longer line left behind.
func (p *ttyProgress) draw() {
	if p.cur != nil {
		fmt.Fprintf(p.w, "\r%s\x1b[K", progressLine(*p.cur, p.now().Sub(p.start)))
	}
}

func (p *ttyProgress) update(c cycle.Cycle) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cur = &c
	p.draw()
}

func (p *ttyProgress) note(msg string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprint(p.w, "\r\x1b[K")
	fmt.Fprintln(p.stderr, "note:", msg)
	p.draw()
}

func (p *ttyProgress) stop() {
	close(p.stopc)
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	p.draw()
	if p.cur != nil {
		fmt.Fprintln(p.w)
	}
}

var (
	_ progress = quietProgress{}
	_ progress = (*plainProgress)(nil)
	_ progress = (*ttyProgress)(nil)
)

// progressLine is the TTY line:
// "[web-3] smoke  ███████░░░ 3/4 hosts  failures 0  12s".
func progressLine(c cycle.Cycle, elapsed time.Duration) string {
	done, total := c.HostsDone(), len(c.Hosts)
	s := fmt.Sprintf("[%s] %s  %s %d/%d hosts  failures %d  %s",
		c.ID, c.Phase, bar(done, total, barWidth), done, total, c.Failures(), elapsed.Round(time.Second))
	if c.Paused {
		s += "  paused"
	}
	if c.AbortRequested != "" {
		s += "  abort requested"
	}
	return s
}

// bar draws done of total in width cells, rounding down so a full bar
// means every host is done.
func bar(done, total, width int) string {
	filled := 0
	if total > 0 {
		filled = min(max(done, 0)*width/total, width)
	}
	return strings.Repeat("█", filled) + strings.Repeat("░", width-filled)
}

// plainLine is the line per change:
// `12:00:01 web-3 phase=smoke hosts=3/4 failures=0 message="..."`.
func plainLine(c cycle.Cycle, loc *time.Location) string {
	at := c.UpdatedAt
	if at.IsZero() {
		at = time.Now()
	}
	return at.In(loc).Format(time.TimeOnly) + " " + c.ID + " " + plainFields(c)
}

// plainFields is plainLine without the time and id.
func plainFields(c cycle.Cycle) string {
	s := fmt.Sprintf("phase=%s hosts=%d/%d failures=%d", c.Phase, c.HostsDone(), len(c.Hosts), c.Failures())
	if c.Paused {
		s += " paused=true"
	}
	if c.AbortRequested != "" {
		s += fmt.Sprintf(" abort_requested=%q", c.AbortRequested)
	}
	return s + fmt.Sprintf(" message=%q", c.Message)
}
