package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/cyclerhq/cycler/api"
	"github.com/cyclerhq/cycler/cycle"
	"github.com/cyclerhq/cycler/pkgstore"
)

// defaultHistoryLimit is how many cycles `history` shows unless --limit says.
const defaultHistoryLimit = 20

func newHistoryCmd(g *globals) *cobra.Command {
	var (
		limit int
		id    string
	)
	cmd := &cobra.Command{
		Use:   "history [SERVICE]",
		Short: "List past and running cycles, newest first, or show one cycle in detail with --cycle",
		Long: `History lists the cycles of every service, or of SERVICE, newest first.

With --cycle ID it shows one cycle in detail instead: its phase timings, each
host's deploy and smoke results with every check, and each LB's
acknowledgement of the switch.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if id != "" {
				if len(args) > 0 {
					return fmt.Errorf("history: give either SERVICE (%s) or --cycle %s, not both", args[0], id)
				}
				var c cycle.Cycle
				if err := g.call(cmd, http.MethodGet, "/v1/cycles/"+url.PathEscape(id), nil, &c); err != nil {
					return fmt.Errorf("cycle %s: %w", id, err)
				}
				if g.json {
					return g.printJSON(c)
				}
				return renderCycle(g.stdout, c, time.Local)
			}
			if limit < 1 {
				return fmt.Errorf("history: --limit %d is too small; use 1 or more", limit)
			}
			q := url.Values{"limit": {strconv.Itoa(limit)}}
			if len(args) == 1 {
				q.Set("service", args[0])
			}
			var list []cycle.Cycle
			if err := g.call(cmd, http.MethodGet, "/v1/cycles?"+q.Encode(), nil, &list); err != nil {
				return err
			}
			if g.json {
				return g.printJSON(list)
			}
			if len(list) == 0 {
				fmt.Fprintln(g.stdout, "no cycles yet; start one with `cyclerctl deploy FILE|DIGEST`")
				return nil
			}
			return renderHistory(g.stdout, list, time.Local)
		},
	}
	cmd.Flags().IntVar(&limit, "limit", defaultHistoryLimit, "show at most this many cycles")
	cmd.Flags().StringVar(&id, "cycle", "", "show this cycle (an id such as web-3) in detail")
	return cmd
}

// renderHistory writes the history table.
func renderHistory(w io.Writer, list []cycle.Cycle, loc *time.Location) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "ID\tKIND\tTRIGGER\tVERSION\tFROM->TARGET\tPHASE\tSTARTED\tDURATION\tFAILURES")
	for _, c := range list {
		phase := string(c.Phase)
		if c.Paused {
			phase += " (paused)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s->%s\t%s\t%s\t%s\t%d\n", c.ID, c.Kind, orDash(c.Trigger), orDash(c.Package.Version),
			orNone(c.From), c.Target, phase, formatTime(c.CreatedAt, loc), cycleDuration(c), c.Failures())
	}
	return tw.Flush()
}

// renderCycle writes one cycle in detail: a header, then tables of phases,
// hosts, checks and LBs.
func renderCycle(w io.Writer, c cycle.Cycle, loc *time.Location) error {
	tw := newTable(w)
	kind := fmt.Sprintf("%s, trigger %s, by %s", c.Kind, orDash(c.Trigger), orDash(c.By))
	if c.Forced {
		kind += ", forced outside the deploy windows"
	}
	fmt.Fprintf(tw, "cycle\t%s (rev %d)\n", c.ID, c.Rev)
	fmt.Fprintf(tw, "service\t%s\n", c.Service)
	fmt.Fprintf(tw, "kind\t%s\n", kind)
	fmt.Fprintf(tw, "package\t%s\n", release(c.Package))
	fmt.Fprintf(tw, "previous\t%s\n", release(c.Previous))
	fmt.Fprintf(tw, "pools\t%s -> %s\n", orNone(c.From), c.Target)
	fmt.Fprintf(tw, "phase\t%s\n", c.Phase)
	fmt.Fprintf(tw, "message\t%s\n", orDash(c.Message))
	if c.Paused {
		fmt.Fprintf(tw, "paused\tyes; resume with `cyclerctl resume %s`\n", c.ID)
	}
	if c.AbortRequested != "" {
		fmt.Fprintf(tw, "abort\trequested: %s\n", c.AbortRequested)
	}
	fmt.Fprintf(tw, "started\t%s\n", formatTime(c.CreatedAt, loc))
	if !c.FinishedAt.IsZero() {
		fmt.Fprintf(tw, "finished\t%s (%s)\n", formatTime(c.FinishedAt, loc), cycleDuration(c))
	}
	fmt.Fprintf(tw, "generations\tbase %d, hide %s, switch %s, flip back %s\n", c.BaseGeneration,
		genOrDash(c.HideGeneration), genOrDash(c.SwitchGeneration), genOrDash(c.FlipGeneration))
	if c.BakeRounds > 0 || len(c.BakeFailures) > 0 {
		fmt.Fprintf(tw, "bake\t%d rounds, %d failures\n", c.BakeRounds, len(c.BakeFailures))
		for _, f := range c.BakeFailures {
			fmt.Fprintf(tw, "\t%s\n", f)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	if len(c.Phases) > 0 {
		fmt.Fprintln(w)
		tw = newTable(w)
		fmt.Fprintln(tw, "PHASE\tSTARTED\tDURATION")
		for _, s := range c.Phases {
			d := "running"
			switch {
			case s.Phase.Terminal():
				d = "-"
			case !s.End.IsZero():
				d = shortDuration(s.Duration())
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Phase, formatTime(s.Start, loc), d)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}

	if len(c.Hosts) > 0 {
		fmt.Fprintln(w)
		tw = newTable(w)
		fmt.Fprintln(tw, "HOST\tPOOL\tADDRESS\tDEPLOY\tSMOKE\tFAILED")
		for _, h := range c.Hosts {
			addr := orDash(h.Address)
			if h.Port != 0 {
				addr += ":" + strconv.Itoa(h.Port)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", h.Instance, h.Pool, addr, stepResult(h.Deploy), stepResult(h.Smoke), yesNo(h.Failed))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}

	if hasChecks(c) {
		fmt.Fprintln(w)
		tw = newTable(w)
		fmt.Fprintln(tw, "HOST\tCHECK\tPASSED\tATTEMPTS\tDURATION\tERROR")
		for _, h := range c.Hosts {
			for _, cr := range h.Checks {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", h.Instance, cr.Name, yesNo(cr.Passed), cr.Attempts,
					shortDuration(time.Duration(cr.DurationMS)*time.Millisecond), orDash(truncate(cr.Error, maxErrorWidth)))
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}

	if len(c.LBs) > 0 {
		fmt.Fprintln(w)
		tw = newTable(w)
		fmt.Fprintln(tw, "LB\tGENERATION\tACK\tACKED AT\tPROBE")
		for _, lb := range c.LBs {
			fmt.Fprintf(tw, "%s\t%d\t%dms\t%s\t%s\n", lb.ID, lb.Generation, lb.AckMS, formatTime(lb.AckedAt, loc), orDash(lb.Probe))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// newTable is g.table for any writer, so renderers can be tested alone.
func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
}

func hasChecks(c cycle.Cycle) bool {
	for _, h := range c.Hosts {
		if len(h.Checks) > 0 {
			return true
		}
	}
	return false
}

// stepResult is "ok 12s", "failed 3s: <error>", or "-" before the step ran.
func stepResult(s *cycle.Step) string {
	if s == nil {
		return "-"
	}
	d := shortDuration(s.FinishedAt.Sub(s.StartedAt))
	if s.OK {
		return "ok " + d
	}
	return "failed " + d + ": " + truncate(orDash(s.Error), maxErrorWidth)
}

// release is "1.2.3 (sha256 0123456789ab)", or "none".
func release(r cycle.Release) string {
	if r.IsZero() {
		return "none"
	}
	return fmt.Sprintf("%s (%s)", orDash(r.Version), orDash(pkgstore.ShortDigest(r.Digest)))
}

// cycleDuration is how long a finished cycle took, or "running".
func cycleDuration(c cycle.Cycle) string {
	if c.FinishedAt.IsZero() {
		return "running"
	}
	return shortDuration(c.FinishedAt.Sub(c.CreatedAt))
}

func formatTime(t time.Time, loc *time.Location) string {
	if t.IsZero() {
		return "-"
	}
	return t.In(loc).Format(time.RFC3339)
}

func genOrDash(g uint64) string {
	if g == 0 {
		return "-"
	}
	return strconv.FormatUint(g, 10)
}

func orNone(pool string) string {
	if pool == "" {
		return "none"
	}
	return pool
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// newCycleActionCmds returns abort, pause and resume.
func newCycleActionCmds(g *globals) []*cobra.Command {
	var reason string
	abort := &cobra.Command{
		Use:   "abort CYCLE_ID [--reason TEXT]",
		Short: "Stop a running cycle at its next step (aborted before the switch, rolled back after it)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.cycleAction(cmd, args[0], "abort", cycle.AbortRequest{Reason: reason})
			if err != nil || g.json {
				return err
			}
			end := "it ends aborted; users never see the package"
			if !c.Phase.BeforeSwitch() {
				end = "the previous pool goes live again and it ends rolled_back"
			}
			fmt.Fprintf(g.stdout, "abort of %s requested in phase %s: it stops at its next step and %s; watch it with `cyclerctl history --cycle %s`\n",
				c.ID, c.Phase, end, c.ID)
			return nil
		},
	}
	abort.Flags().StringVar(&reason, "reason", "", "why the cycle is stopped (recorded in the cycle and the audit trail)")
	pause := &cobra.Command{
		Use:   "pause CYCLE_ID",
		Short: "Hold a running cycle before its next step, until resume",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.cycleAction(cmd, args[0], "pause", struct{}{})
			if err != nil || g.json {
				return err
			}
			fmt.Fprintf(g.stdout, "%s paused in phase %s: it holds before its next step; continue with `cyclerctl resume %s`\n", c.ID, c.Phase, c.ID)
			return nil
		},
	}
	resume := &cobra.Command{
		Use:   "resume CYCLE_ID",
		Short: "Let a paused cycle go on",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.cycleAction(cmd, args[0], "resume", struct{}{})
			if err != nil || g.json {
				return err
			}
			fmt.Fprintf(g.stdout, "%s resumed in phase %s\n", c.ID, c.Phase)
			return nil
		},
	}
	return []*cobra.Command{abort, pause, resume}
}

// cycleAction posts body to /v1/cycles/{id}/{verb} and returns the cycle,
// printing it first with --json.
func (g *globals) cycleAction(cmd *cobra.Command, id, verb string, body any) (cycle.Cycle, error) {
	var c cycle.Cycle
	if err := g.call(cmd, http.MethodPost, "/v1/cycles/"+url.PathEscape(id)+"/"+verb, body, &c); err != nil {
		if errors.Is(err, api.ErrConflict) {
			return c, fmt.Errorf("%s %s: %w; see `cyclerctl history --cycle %s`", verb, id, err, id)
		}
		return c, fmt.Errorf("%s %s: %w", verb, id, err)
	}
	if g.json {
		return c, g.printJSON(c)
	}
	return c, nil
}

// writeSummary prints the outcome of a finished cycle: what is live now,
// the phase timings, the failed hosts with their errors, and the exit code.
func writeSummary(w io.Writer, c cycle.Cycle) {
	fmt.Fprintln(w, outcomeLine(c))
	if c.Message != "" {
		fmt.Fprintf(w, "  message   %s\n", c.Message)
	}
	live := "no pool live"
	if p := livePool(c); p != "" {
		live = p + " live"
	}
	fmt.Fprintf(w, "  pools     %s -> %s, %s\n", poolRelease(c.From, c.Previous), poolRelease(c.Target, c.Package), live)
	if t := phaseTimings(c); t != "" {
		fmt.Fprintf(w, "  phases    %s\n", t)
	}
	label := "failed"
	for _, h := range c.Hosts {
		if h.Failed {
			fmt.Fprintf(w, "  %-9s %s: %s\n", label, h.Instance, hostError(h))
			label = ""
		}
	}
	if len(c.BakeFailures) > 0 {
		fmt.Fprintf(w, "  bake      %d rounds, failures: %s\n", c.BakeRounds, strings.Join(c.BakeFailures, "; "))
	}
	fmt.Fprintf(w, "exit %d\n", cycle.ExitCode(c.Phase))
}

// outcomeLine is the first line of the summary.
func outcomeLine(c cycle.Cycle) string {
	release := c.Service + " " + orDash(c.Package.Version)
	switch {
	case c.Phase == cycle.Done && c.Kind == cycle.KindRecycle:
		return fmt.Sprintf("%s done: the %s pool is refreshed to %s; the %s pool stays live", c.ID, c.Target, release, orDash(c.From))
	case c.Phase == cycle.Done:
		return fmt.Sprintf("%s done: %s is live on the %s pool", c.ID, release, c.Target)
	case c.Phase == cycle.Aborted:
		return fmt.Sprintf("%s aborted before the switch: %s never went live; %s", c.ID, release, stillLive(c))
	case c.Phase == cycle.RolledBack:
		return fmt.Sprintf("%s rolled back: %s went live on the %s pool and was undone; %s", c.ID, release, c.Target, stillLive(c))
	}
	return fmt.Sprintf("%s is in phase %s", c.ID, c.Phase)
}

// stillLive says what serves users after a cycle that did not go live.
func stillLive(c cycle.Cycle) string {
	if c.From == "" {
		return "no pool is live"
	}
	return fmt.Sprintf("the %s pool (%s) is live", c.From, orDash(c.Previous.Version))
}

// livePool is the pool that serves users after the cycle.
func livePool(c cycle.Cycle) string {
	if c.Phase == cycle.Done && c.Kind != cycle.KindRecycle {
		return c.Target
	}
	return c.From
}

// poolRelease is "green (1.2.3)", or "none" for no pool.
func poolRelease(pool string, r cycle.Release) string {
	if pool == "" {
		return "none"
	}
	return fmt.Sprintf("%s (%s)", pool, orDash(r.Version))
}

// phaseTimings is "preflight 1s, hide 5s, ...; total 1m43s". Terminal
// phases have no length and are left out.
func phaseTimings(c cycle.Cycle) string {
	var parts []string
	for _, s := range c.Phases {
		switch {
		case s.Phase.Terminal():
		case s.End.IsZero():
			parts = append(parts, string(s.Phase)+" running")
		default:
			parts = append(parts, string(s.Phase)+" "+shortDuration(s.Duration()))
		}
	}
	out := strings.Join(parts, ", ")
	if !c.FinishedAt.IsZero() && !c.CreatedAt.IsZero() {
		if out != "" {
			out += "; "
		}
		out += "total " + shortDuration(c.FinishedAt.Sub(c.CreatedAt))
	}
	return out
}

// shortDuration rounds d for people: milliseconds under 1s, 0.1s steps
// under 10s, seconds above.
func shortDuration(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// hostError says why a host failed: its failed step and failed checks.
func hostError(h cycle.Host) string {
	var parts []string
	if s := h.Deploy; s != nil && !s.OK {
		parts = append(parts, "deploy: "+orDash(s.Error))
	}
	if s := h.Smoke; s != nil && !s.OK {
		parts = append(parts, "smoke: "+orDash(s.Error))
	}
	for _, cr := range h.Checks {
		if !cr.Passed {
			parts = append(parts, fmt.Sprintf("check %s failed after %d attempts: %s", cr.Name, cr.Attempts, orDash(cr.Error)))
		}
	}
	if len(parts) == 0 {
		return "failed (no detail recorded)"
	}
	return strings.Join(parts, "; ")
}
