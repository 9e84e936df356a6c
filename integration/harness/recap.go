package harness

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

// A failed test prints the log tails of every process it started, and in a
// lab that is a dozen processes: the reason the test failed ends up far
// above the last screen of output, which is often all a CI summary shows.
// The recap repeats the reasons at the very end. Tests record them by
// failing through Fatalf, Fatal and Errorf below instead of the methods of
// *testing.T; StartProcess arms the recap before it registers its own
// Cleanup, so the recap's Cleanup runs after every log tail.

// errorPrefix starts every failure line, so a reader (or a CI summary)
// looking for the first "Error:" finds the test's own reason before the
// log tails, some of which (varnishd's) also say "Error:".
const errorPrefix = "Error: "

// recap is one test's recorded failure reasons.
type recap struct {
	mu      sync.Mutex
	reasons []string
}

// recaps maps a T to its *recap.
var recaps sync.Map

// armRecap registers, once per t, the Cleanup that prints t's reasons if
// t failed. Cleanups run last registered first, so arming before any
// process Cleanup makes the recap the last thing the test prints.
func armRecap(t T) *recap {
	r := &recap{}
	v, loaded := recaps.LoadOrStore(t, r)
	if loaded {
		return v.(*recap)
	}
	t.Cleanup(func() {
		recaps.Delete(t)
		if !t.Failed() {
			return
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if len(r.reasons) == 0 {
			t.Logf("harness: FAILED; the reason is above the process log tails")
			return
		}
		t.Logf("harness: FAILED, for these reasons (repeated after the process log tails):\n  %s%s",
			errorPrefix, strings.Join(r.reasons, "\n  "+errorPrefix))
	})
	return r
}

// ArmRecap makes sure t ends with a recap of its failure reasons. Call it
// before starting anything whose Cleanup logs a lot; StartProcess calls it.
func ArmRecap(t T) { armRecap(t) }

// note records a reason for t's recap. The message is cut at a few
// hundred characters: the full text is already in the log above.
func note(t T, msg string) {
	const maxRecap = 600
	if len(msg) > maxRecap {
		cut := maxRecap
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut] + " …(cut; the full text is above)"
	}
	r := armRecap(t)
	r.mu.Lock()
	r.reasons = append(r.reasons, msg)
	r.mu.Unlock()
}

// reason records msg for t's recap and returns the line to fail t with:
// msg after errorPrefix, except in the lab, whose output says "lab:".
func reason(t T, msg string) string {
	note(t, msg)
	if _, lab := t.(*LabT); lab {
		return msg
	}
	return errorPrefix + msg
}

// Fatalf records the reason for the recap and fails t as t.Fatalf does.
func Fatalf(t testing.TB, format string, args ...any) {
	t.Helper()
	t.Fatal(reason(t, fmt.Sprintf(format, args...)))
}

// Fatal records the reason for the recap and fails t as t.Fatal does.
func Fatal(t testing.TB, args ...any) {
	t.Helper()
	t.Fatal(reason(t, fmt.Sprint(args...)))
}

// Errorf records the reason for the recap and marks t failed as t.Errorf
// does.
func Errorf(t testing.TB, format string, args ...any) {
	t.Helper()
	t.Error(reason(t, fmt.Sprintf(format, args...)))
}

// fatalf is Fatalf for the harness's own T.
func fatalf(t T, format string, args ...any) {
	t.Helper()
	t.Fatalf("%s", reason(t, fmt.Sprintf(format, args...)))
}
