package orchestrator

import (
	"slices"
	"sort"
	"time"
)

// Window is a span of each listed weekday, in a time zone, when cycles may
// start. End is after Start on the same day.
type Window struct {
	Name string
	// Days are the weekdays it applies to; empty means every day.
	Days []time.Weekday
	// Start and End are offsets from local midnight.
	Start, End time.Duration
	Location   *time.Location
}

// contains reports whether t falls inside w.
func (w Window) contains(t time.Time) bool {
	lt := t.In(w.Location)
	if len(w.Days) > 0 && !slices.Contains(w.Days, lt.Weekday()) {
		return false
	}
	// Compare wall-clock time of day, not instants: on the day clocks go
	// back, 02:30 happens twice and both are inside a 02:30-04:00 window;
	// on the day they go forward, the window starts at the first wall
	// time that exists after its start.
	wall := time.Duration(lt.Hour())*time.Hour + time.Duration(lt.Minute())*time.Minute + time.Duration(lt.Second())*time.Second
	return wall >= w.Start && wall < w.End
}

// bounds returns the day's opening and closing times. They are built from
// the wall clock, so on a DST change day a window still opens at its local
// time (time.Date normalises a time skipped by the change).
func (w Window) bounds(day time.Time) (time.Time, time.Time) {
	y, m, d := day.Date()
	at := func(off time.Duration) time.Time {
		h, mi := int(off/time.Hour), int(off%time.Hour/time.Minute)
		return time.Date(y, m, d, h, mi, 0, 0, w.Location)
	}
	return at(w.Start), at(w.End)
}

// nextOpen returns when w next opens after t, looking 8 days ahead.
func (w Window) nextOpen(t time.Time) (time.Time, bool) {
	lt := t.In(w.Location)
	for i := range 9 {
		day := lt.AddDate(0, 0, i)
		if len(w.Days) > 0 && !slices.Contains(w.Days, day.Weekday()) {
			continue
		}
		open, _ := w.bounds(day)
		if open.After(t) {
			return open, true
		}
	}
	return time.Time{}, false
}

// inWindows reports whether t is inside one of ws (always true without
// windows) and, when not, when the next one opens, formatted in its zone.
func inWindows(ws []Window, t time.Time) (bool, string) {
	if len(ws) == 0 {
		return true, ""
	}
	var next []time.Time
	for _, w := range ws {
		if w.contains(t) {
			return true, ""
		}
		if n, ok := w.nextOpen(t); ok {
			next = append(next, n)
		}
	}
	if len(next) == 0 {
		return false, "never (no window has a day)"
	}
	sort.Slice(next, func(i, j int) bool { return next[i].Before(next[j]) })
	return false, next[0].Format("2006-01-02 15:04 MST")
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
