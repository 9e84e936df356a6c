// Command fakelb is the driver program execdriver's unit tests run: a load
// balancer that is a JSON file, speaking exec protocol 1, with flags that
// make it misbehave in the ways the tests need. It logs every call (verb,
// arguments, environment, working directory, stdin and pid) as one JSON
// line to --log, so a test can tell whether and how it ran.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"time"
)

// state is the fake LB: what apply stores and applied reports.
type state struct {
	Generation uint64            `json:"generation"`
	Backends   []json.RawMessage `json:"backends"`
}

// call is one logged invocation.
type call struct {
	Verb  string   `json:"verb"`
	Args  []string `json:"args"`
	Env   []string `json:"env"`
	Dir   string   `json:"dir"`
	Stdin string   `json:"stdin"`
	Pid   int      `json:"pid"`
}

func main() {
	os.Exit(run())
}

func run() int {
	var (
		statePath   = flag.String("state", "", "state file (the fake LB)")
		logPath     = flag.String("log", "", "call log file")
		info        = flag.String("info", `{"protocol":1,"name":"fake"}`, "literal answer to info")
		appliedOut  = flag.String("applied", "", "literal answer to applied instead of the state")
		failApply   = flag.Int("fail-apply", -1, "apply prints this many stderr lines and a last one, then exits 1")
		ignoreApply = flag.Bool("ignore-apply", false, "apply exits 0 without storing anything")
		hang        = flag.String("hang", "", "this verb starts a child, writes its pid to --child-pid and sleeps")
		childPid    = flag.String("child-pid", "", "where --hang writes the child's pid")
		bigStdout   = flag.String("big-stdout", "", "this verb prints 2 MiB on stdout")
		leakStdout  = flag.String("leak-stdout", "", "this verb starts a child that keeps stdout open, writes its pid to --child-pid and exits 0")
		child       = flag.Bool("child", false, "sleep forever (the child --hang starts)")
	)
	flag.Parse()
	if *child {
		time.Sleep(time.Hour)
		return 0
	}
	if flag.NArg() != 1 {
		fmt.Fprintf(os.Stderr, "fakelb: want one verb, got %q\n", flag.Args())
		return 2
	}
	verb := flag.Arg(0)
	var stdin []byte
	if verb != "info" {
		stdin, _ = io.ReadAll(os.Stdin)
	}
	dir, _ := os.Getwd()
	if err := logCall(*logPath, call{Verb: verb, Args: os.Args[1:], Env: os.Environ(), Dir: dir, Stdin: string(stdin), Pid: os.Getpid()}); err != nil {
		fmt.Fprintln(os.Stderr, "fakelb:", err)
		return 1
	}
	if verb == *hang {
		cmd := exec.Command(os.Args[0], "--child")
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, "fakelb:", err)
			return 1
		}
		_ = os.WriteFile(*childPid, []byte(fmt.Sprint(cmd.Process.Pid)), 0o644)
		time.Sleep(time.Hour)
	}
	if verb == *leakStdout {
		cmd := exec.Command(os.Args[0], "--child")
		cmd.Stdout = os.Stdout
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, "fakelb:", err)
			return 1
		}
		_ = os.WriteFile(*childPid, []byte(fmt.Sprint(cmd.Process.Pid)), 0o644)
		fmt.Println(`{"generation":0,"backends":[]}`)
		return 0
	}
	if verb == *bigStdout {
		os.Stdout.Write([]byte(strings.Repeat("x", 2<<20)))
		return 0
	}
	switch verb {
	case "info":
		fmt.Println(*info)
		return 0
	case "apply":
		return apply(*statePath, stdin, *failApply, *ignoreApply)
	case "applied":
		if *appliedOut != "" {
			fmt.Println(*appliedOut)
			return 0
		}
		st, err := load(*statePath)
		if err != nil {
			fmt.Fprintln(os.Stderr, "fakelb:", err)
			return 1
		}
		out, _ := json.Marshal(st)
		fmt.Println(string(out))
		return 0
	}
	fmt.Fprintf(os.Stderr, "fakelb: unknown verb %q\n", verb)
	return 2
}

// apply stores the request unless told to fail, and refuses a generation
// lower than the stored one with exit status 3.
func apply(path string, stdin []byte, fail int, ignore bool) int {
	if fail >= 0 {
		for i := range fail {
			fmt.Fprintf(os.Stderr, "fakelb: detail line %d\n", i)
		}
		fmt.Fprintln(os.Stderr, "fakelb: the LB refused the set")
		return 1
	}
	var req struct {
		Protocol   int               `json:"protocol"`
		Generation uint64            `json:"generation"`
		Backends   []json.RawMessage `json:"backends"`
	}
	if err := json.Unmarshal(stdin, &req); err != nil || req.Protocol != 1 {
		fmt.Fprintf(os.Stderr, "fakelb: bad request %q: %v\n", stdin, err)
		return 2
	}
	if ignore {
		return 0
	}
	st, err := load(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fakelb:", err)
		return 1
	}
	if req.Generation < st.Generation {
		fmt.Fprintf(os.Stderr, "fakelb: generation %d is older than the stored %d\n", req.Generation, st.Generation)
		return 3
	}
	out, _ := json.Marshal(state{Generation: req.Generation, Backends: req.Backends})
	if err := os.WriteFile(path, out, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "fakelb:", err)
		return 1
	}
	return 0
}

// load reads the state file; a missing file is generation 0, no backends.
func load(path string) (state, error) {
	st := state{Backends: []json.RawMessage{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(b, &st)
}

// logCall appends c to the log file as one JSON line.
func logCall(path string, c call) error {
	if path == "" {
		return nil
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	b, _ := json.Marshal(c)
	_, err = f.Write(append(b, '\n'))
	return err
}
