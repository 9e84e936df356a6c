package pool

import "testing"

func TestParse(t *testing.T) {
	tests := []struct {
		give    string
		want    Pool
		wantErr bool
	}{
		{give: "blue", want: Blue},
		{give: "green", want: Green},
		{give: "Blue", wantErr: true},
		{give: "", wantErr: true},
	}
	for _, tt := range tests {
		got, err := Parse(tt.give)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("Parse(%q) = %q, %v; want %q, err=%v", tt.give, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestOther(t *testing.T) {
	if Blue.Other() != Green || Green.Other() != Blue {
		t.Fatalf("Other is not an involution: blue->%q green->%q", Blue.Other(), Green.Other())
	}
}

func TestHiddenReasonRoundTrip(t *testing.T) {
	tests := []struct {
		give   string
		want   uint64
		wantOK bool
	}{
		{give: HiddenReason(42), want: 42, wantOK: true},
		{give: HiddenReason(0), want: 0, wantOK: true},
		{give: "cycler: hidden (generation x)", wantOK: false},
		{give: "maintenance by ops", wantOK: false},
		{give: "cycler: hidden (generation 18446744073709551616)", wantOK: false},
	}
	for _, tt := range tests {
		got, ok := ParseHiddenReason(tt.give)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("ParseHiddenReason(%q) = %d, %v; want %d, %v", tt.give, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestKeys(t *testing.T) {
	if got := StateKey("web"); got != "cycler/web/state" {
		t.Errorf("StateKey = %q", got)
	}
	if got := AckKey("web", "lb1"); got != "cycler/web/lb/lb1" {
		t.Errorf("AckKey = %q", got)
	}
	if got := Tag(Green); got != "cycler-green" {
		t.Errorf("Tag = %q", got)
	}
}
