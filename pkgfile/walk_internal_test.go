package pkgfile

import (
	"strings"
	"testing"
)

func TestCleanPath(t *testing.T) {
	tests := []struct {
		give    string
		want    string
		wantBad bool
	}{
		{"a", "a", false},
		{"./a/b", "a/b", false},
		{"a//b/./c/", "a/b/c", false},
		{"./", "", false},
		{".", "", false},
		{"a/", "a", false},
		{"..", "", true},
		{"../a", "", true},
		{"a/../b", "", true},
		{"a/..", "", true},
		{"/a", "", true},
		{"//a", "", true},
		{"", "", true},
		{"a\x00b", "", true},
		{"a..b/..c", "a..b/..c", false},
	}
	for _, tt := range tests {
		got, why := cleanPath(tt.give)
		if got != tt.want || (why != "") != tt.wantBad {
			t.Errorf("cleanPath(%q) = %q, %q; want %q, bad=%v", tt.give, got, why, tt.want, tt.wantBad)
		}
	}
}

func TestCheckSymlink(t *testing.T) {
	tests := []struct {
		path    string
		target  string
		wantBad bool
	}{
		{"l", "a", false},
		{"l", "./a/b", false},
		{"l", ".", false},
		{"d/l", "..", false},
		{"d/l", "../a", false},
		{"d/e/l", "../../a/b", false},
		{"l", "..", true},
		{"l", "../x", true},
		{"d/l", "../..", true},
		{"d/l", "../../x", true},
		{"l", "/etc", true},
		{"l", "", true},
		{"l", "a\x00", true},
		{"l", "a/..", true},
		{"x/y/t", "../../l/..", true},
		{"d/l", "a/../../x", true},
		{"d/l", "..//../", true},
		{"d/l", "./../.", false},
	}
	for _, tt := range tests {
		why := checkSymlink(tt.path, tt.target)
		if (why != "") != tt.wantBad {
			t.Errorf("checkSymlink(%q, %q) = %q, want bad=%v", tt.path, tt.target, why, tt.wantBad)
		}
	}
}

func TestLimitsWithDefaults(t *testing.T) {
	def := DefaultLimits()
	if got := (Limits{}).withDefaults(); got != def {
		t.Errorf("zero Limits = %+v, want %+v", got, def)
	}
	if got := (Limits{MaxArchiveBytes: -1, MaxFiles: -5}).withDefaults(); got != def {
		t.Errorf("negative Limits = %+v, want %+v", got, def)
	}
	give := Limits{MaxArchiveBytes: 1, MaxUnpackedBytes: 2, MaxFiles: 3, MaxManifestBytes: 4}
	if got := give.withDefaults(); got != give {
		t.Errorf("set Limits = %+v, want them unchanged", got)
	}
}

func TestPathLengthLimits(t *testing.T) {
	long := strings.Repeat("a", maxComponentBytes)
	tests := []struct {
		give    string
		wantBad bool
	}{
		{long, false},
		{long + "a", true},
		{"d/" + long + "a/x", true},
		{strings.Repeat(long+"/", maxPathBytes/(maxComponentBytes+1)), false},
		{strings.Repeat("a/", maxPathBytes/2) + "a", true},
	}
	for _, tt := range tests {
		if _, why := cleanPath(tt.give); (why != "") != tt.wantBad {
			t.Errorf("cleanPath(%d bytes) = %q, want bad=%v", len(tt.give), why, tt.wantBad)
		}
	}
	if why := checkSymlink("l", strings.Repeat("a/", maxPathBytes/2)+"a"); why == "" {
		t.Error("checkSymlink accepted a target longer than the limit")
	}
}
