package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// serviceSchedules is one service of GET /v1/schedules
// (orchestrator.ServiceSchedules).
type serviceSchedules struct {
	Service   string           `json:"service"`
	Schedules []scheduleStatus `json:"schedules"`
	Staged    *struct {
		Digest  string    `json:"digest"`
		Version string    `json:"version"`
		By      string    `json:"by"`
		At      time.Time `json:"at"`
	} `json:"staged,omitempty"`
	WindowOpen bool   `json:"window_open"`
	Window     string `json:"window"`
	Frozen     string `json:"frozen,omitempty"`
}

// scheduleStatus is one schedule (orchestrator.ScheduleStatus).
type scheduleStatus struct {
	Name     string       `json:"name"`
	Cron     string       `json:"cron"`
	TimeZone string       `json:"time_zone"`
	Action   string       `json:"action"`
	MaxDelay string       `json:"max_delay"`
	Next     []stagedNext `json:"next"`
	LastRuns []struct {
		FireTime time.Time `json:"fire_time"`
		Outcome  string    `json:"outcome"`
		Reason   string    `json:"reason"`
		CycleID  string    `json:"cycle_id"`
	} `json:"last_runs"`
}

func newScheduleCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "schedule",
		Short: "Show the services' schedules, staged packages and deploy windows",
	}
	list := &cobra.Command{
		Use:   "list [SERVICE]",
		Short: "List each schedule's next fire times (in its zone), its last run, the staged package and the window state",
		Long: `List shows, per service, each schedule with its next three fire times in the
schedule's own time zone and its last recorded run (started with its cycle,
or skipped with the reason), then the package staged with
cyclerctl deploy --at-window, whether a deploy window is open, and a freeze.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := "/v1/schedules"
			if len(args) == 1 {
				path += "/" + url.PathEscape(args[0])
			}
			// --json prints the server's answer whole; the table needs
			// only some of it.
			var raw json.RawMessage
			if err := g.call(cmd, http.MethodGet, path, nil, &raw); err != nil {
				return err
			}
			if g.json {
				return g.printJSON(raw)
			}
			var out []serviceSchedules
			if err := json.Unmarshal(raw, &out); err != nil {
				return fmt.Errorf("schedule list: decode the answer: %w", err)
			}
			return renderSchedules(g.stdout, out)
		},
	}
	cmd.AddCommand(list)
	return cmd
}

// renderSchedules prints one block per service: a table of its schedules,
// then its staged package, window and freeze.
func renderSchedules(w io.Writer, list []serviceSchedules) error {
	for i, s := range list {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "service %s\n", s.Service)
		if len(s.Schedules) == 0 {
			fmt.Fprintln(w, "  no schedules")
		} else {
			tw := newTable(w)
			fmt.Fprintln(tw, "  SCHEDULE\tACTION\tCRON\tZONE\tNEXT\tLAST RUN")
			for _, sc := range s.Schedules {
				var next []string
				for _, n := range sc.Next {
					next = append(next, n.Local)
				}
				fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", sc.Name, sc.Action, sc.Cron, sc.TimeZone, orDash(strings.Join(next, ", ")), lastRun(sc))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
		}
		if s.Staged != nil {
			fmt.Fprintf(w, "  staged  %s (%s) by %s at %s\n", s.Staged.Version, s.Staged.Digest, s.Staged.By, s.Staged.At.UTC().Format(time.RFC3339))
		} else {
			fmt.Fprintln(w, "  staged  nothing")
		}
		fmt.Fprintf(w, "  window  %s\n", s.Window)
		if s.Frozen != "" {
			fmt.Fprintf(w, "  frozen  %s\n", s.Frozen)
		}
	}
	return nil
}

// lastRun describes a schedule's newest run.
func lastRun(sc scheduleStatus) string {
	if len(sc.LastRuns) == 0 {
		return "-"
	}
	r := sc.LastRuns[0]
	at := r.FireTime.UTC().Format(time.RFC3339)
	if r.Outcome == "skipped" {
		return fmt.Sprintf("%s skipped: %s", at, r.Reason)
	}
	if r.CycleID == "" {
		return at + " started (the cycle is being created)"
	}
	return fmt.Sprintf("%s started %s", at, r.CycleID)
}
