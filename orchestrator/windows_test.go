package orchestrator

import (
	"testing"
	"time"

	"github.com/cyclerhq/cycler/config"
)

// TestWindowsAcrossDST: a 02:30-04:00 window in Europe/Berlin on the day
// clocks go forward (2026-03-29, 02:00 -> 03:00) and the day they go back
// (2026-10-25, 03:00 -> 02:00), and the next opening time when outside.
func TestWindowsAcrossDST(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skip("no tz database:", err)
	}
	w := config.Window{Name: "night", Start: "02:30", End: "04:00", TimeZone: "Europe/Berlin"}
	tests := []struct {
		name string
		give time.Time
		want bool
	}{
		{name: "spring, 03:30 CEST (after the skipped hour)", give: time.Date(2026, 3, 29, 1, 30, 0, 0, time.UTC), want: true},
		{name: "spring, 04:00 CEST is the end", give: time.Date(2026, 3, 29, 2, 0, 0, 0, time.UTC), want: false},
		{name: "autumn, first 02:30 CEST", give: time.Date(2026, 10, 25, 0, 30, 0, 0, time.UTC), want: true},
		{name: "autumn, second 02:30 CET", give: time.Date(2026, 10, 25, 1, 30, 0, 0, time.UTC), want: true},
		{name: "autumn, 04:00 CET is the end", give: time.Date(2026, 10, 25, 3, 0, 0, 0, time.UTC), want: false},
		{name: "an ordinary noon", give: time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC), want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := w.Contains(tt.give); got != tt.want {
				t.Errorf("contains(%s) = %v, want %v", tt.give.In(berlin), got, tt.want)
			}
		})
	}
	ok, next := inWindows([]config.Window{w}, time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC))
	if ok || next != "2026-06-02 02:30 CEST" {
		t.Errorf("inWindows at noon = %v, %q; want false and the next night's 02:30 CEST", ok, next)
	}
	if ok, _ := inWindows(nil, time.Now()); !ok {
		t.Error("no windows must mean any time")
	}
}
