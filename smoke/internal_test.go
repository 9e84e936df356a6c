package smoke

import (
	"strings"
	"testing"
	"time"
)

func TestTailWriter(t *testing.T) {
	tests := []struct {
		name  string
		limit int
		give  []string
		want  string
	}{
		{name: "under the limit", limit: 8, give: []string{"ab", "cd"}, want: "abcd"},
		{name: "exactly the limit", limit: 4, give: []string{"ab", "cd"}, want: "abcd"},
		{name: "drops the oldest", limit: 4, give: []string{"abc", "def"}, want: "cdef"},
		{name: "one big write", limit: 4, give: []string{"abcdefgh"}, want: "efgh"},
		{name: "big write after small", limit: 4, give: []string{"xy", "abcdefgh", "z"}, want: "fghz"},
		{name: "cut utf-8 character dropped", limit: 4, give: []string{"aé", "日本"}, want: "本"},
		{name: "empty", limit: 4, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &tailWriter{limit: tt.limit}
			for _, s := range tt.give {
				if n, err := w.Write([]byte(s)); n != len(s) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", s, n, err)
				}
			}
			if got := w.String(); got != tt.want || len(w.buf) > tt.limit {
				t.Errorf("tail = %q (buffer %d bytes), want %q within %d bytes", got, len(w.buf), tt.want, tt.limit)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	tests := []struct {
		name  string
		give  time.Duration
		limit time.Duration
		want  time.Duration
	}{
		{name: "doubles", give: time.Second, limit: 10 * time.Second, want: 2 * time.Second},
		{name: "capped", give: 6 * time.Second, limit: 10 * time.Second, want: 10 * time.Second},
		{name: "no overflow", give: 1 << 62, limit: 1<<63 - 1, want: 1<<63 - 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := nextDelay(tt.give, tt.limit); got != tt.want {
				t.Errorf("nextDelay(%s, %s) = %s, want %s", tt.give, tt.limit, got, tt.want)
			}
			for range 100 {
				if j := jitter(tt.give); j < tt.give/2 || j > tt.give {
					t.Fatalf("jitter(%s) = %s, want within [%s, %s]", tt.give, j, tt.give/2, tt.give)
				}
			}
		})
	}
}

func TestCompileAppliesDefaults(t *testing.T) {
	c, probs := Check{Name: "h", Kind: KindHTTP, HTTP: HTTPSpec{Path: "/", BodyMatches: "ok"}}.compile()
	if len(probs) > 0 {
		t.Fatal(strings.Join(probs, "; "))
	}
	if c.Timeout != DefaultTimeout || c.Backoff.Initial != DefaultBackoffInitial || c.Backoff.Max != DefaultBackoffMax ||
		c.HTTP.Method != "GET" || len(c.HTTP.Status) != 1 || c.HTTP.Status[0] != 200 ||
		c.HTTP.MaxBodyBytes != DefaultMaxBodyBytes || c.bodyRE == nil {
		t.Errorf("compiled = %+v, want every default applied and the regexp compiled", c)
	}
	// An initial delay above the default cap raises the cap with it.
	c, _ = Check{Name: "t", Kind: KindTCP, Backoff: Backoff{Initial: time.Minute}}.compile()
	if c.Backoff.Max != time.Minute {
		t.Errorf("backoff max = %s, want %s", c.Backoff.Max, time.Minute)
	}
}
