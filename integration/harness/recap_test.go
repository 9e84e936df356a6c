package harness

import (
	"bytes"
	"strings"
	"testing"
)

// TestRecapComesLast checks that a failed run's reasons are printed again
// after everything the process Cleanups print, and that a run that did not
// fail prints no recap.
func TestRecapComesLast(t *testing.T) {
	t.Run("failed", func(t *testing.T) {
		var out bytes.Buffer
		lab := NewLabT(t.TempDir(), &out)
		ArmRecap(lab) // as StartProcess does before its own Cleanup
		lab.Cleanup(func() { lab.Logf("harness: nginx logs:\n(forty lines)") })
		if err := lab.Run(func() { fatalf(lab, "cycle web-2 ended aborted: %s", "agent unreachable") }); err == nil {
			t.Fatal("Run returned nil after fatalf")
		}
		lab.Close()
		got := out.String()
		tail := got[strings.LastIndex(got, "(forty lines)"):]
		if !strings.Contains(tail, "FAILED, for these reasons") || !strings.Contains(tail, "  Error: cycle web-2 ended aborted: agent unreachable") {
			t.Fatalf("the recap is not after the process logs; output:\n%s", got)
		}
	})
	t.Run("passed", func(t *testing.T) {
		var out bytes.Buffer
		lab := NewLabT(t.TempDir(), &out)
		ArmRecap(lab)
		lab.Close()
		if out.Len() != 0 {
			t.Fatalf("a run that passed printed %q", out.String())
		}
	})
	t.Run("long reason is cut", func(t *testing.T) {
		var out bytes.Buffer
		lab := NewLabT(t.TempDir(), &out)
		_ = lab.Run(func() { fatalf(lab, "%s", strings.Repeat("x", 5000)) })
		lab.Close()
		got := out.String()
		recap := got[strings.Index(got, "FAILED"):]
		if len(recap) > 1000 || !strings.Contains(recap, "(cut; the full text is above)") {
			t.Fatalf("recap of a 5000-character reason is %d characters: %q", len(recap), recap)
		}
	})
}
