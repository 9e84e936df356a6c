package config

import (
	"os"
	"testing"
)

// FuzzParse feeds arbitrary bytes to every role's parser and validator.
// Nothing may panic, every problem must say where it is and what is wrong
// (so `cyclerd config check` never prints a blank line), and the public
// Parse functions must accept exactly the inputs that decode cleanly.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"testdata/server.hcl", "testdata/agent.hcl", "testdata/lb.hcl"} {
		src, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(src)
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		// parseRole is what Parse* and Load* run. A config that decoded
		// only in part is validated too, as Load does.
		s, probs := parseRole[Server](RoleServer, "f.hcl", src, DefaultServer)
		checkFuzzProblems(t, RoleServer, probs)
		if s != nil {
			checkFuzzProblems(t, RoleServer, problemsOf(t, s.Validate()))
		}
		if len(probs) == 0 {
			if _, err := ParseServer("f.hcl", src); err != nil {
				t.Errorf("ParseServer rejects input that decoded cleanly: %v", err)
			}
		}

		a, probs := parseRole[Agent](RoleAgent, "f.hcl", src, DefaultAgent)
		checkFuzzProblems(t, RoleAgent, probs)
		if a != nil {
			checkFuzzProblems(t, RoleAgent, problemsOf(t, a.Validate()))
		}
		if len(probs) == 0 {
			if _, err := ParseAgent("f.hcl", src); err != nil {
				t.Errorf("ParseAgent rejects input that decoded cleanly: %v", err)
			}
		}

		l, probs := parseRole[LB](RoleLB, "f.hcl", src, DefaultLB)
		checkFuzzProblems(t, RoleLB, probs)
		if l != nil {
			checkFuzzProblems(t, RoleLB, problemsOf(t, l.Validate()))
		}
		if len(probs) == 0 {
			if _, err := ParseLB("f.hcl", src); err != nil {
				t.Errorf("ParseLB rejects input that decoded cleanly: %v", err)
			}
		}
	})
}

// checkFuzzProblems checks that every problem has a position and a message
// and that the list prints.
func checkFuzzProblems(t *testing.T, role string, ps Problems) {
	t.Helper()
	for _, p := range ps {
		if p.Pos == "" || p.Msg == "" {
			t.Errorf("%s: problem without position or message: %#v", role, p)
		}
	}
	_ = ps.Error()
}
