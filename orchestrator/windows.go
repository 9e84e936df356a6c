package orchestrator

import (
	"sort"
	"time"

	"github.com/cyclerhq/cycler/config"
)

// inWindows reports whether t is inside one of ws (always true without
// windows) and, when not, when the next one opens, formatted in its zone.
// The windows themselves are config.Window, so `config check` and the
// orchestrator share one rule.
func inWindows(ws []config.Window, t time.Time) (bool, string) {
	if len(ws) == 0 {
		return true, ""
	}
	var next []time.Time
	for _, w := range ws {
		if w.Contains(t) {
			return true, ""
		}
		if n, ok := w.NextOpen(t); ok {
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
