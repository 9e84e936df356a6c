package pool

import (
	"encoding/json"
	"fmt"
)

// Release is the package a pool runs.
type Release struct {
	Version string `json:"version"`
	Digest  string `json:"digest"`
}

// State is the JSON document the leader writes to KV cycler/<svc>/state with
// check-and-set. LBs read it to learn which pool is live. Generation only
// grows, so a reader can always tell a newer document from an older one.
type State struct {
	Generation uint64           `json:"generation"`
	Live       Pool             `json:"live"`
	Pools      map[Pool]Release `json:"pools"`
	// Hidden lists the instance ids the leader has put in maintenance.
	Hidden []string `json:"hidden"`
}

// ParseState decodes and checks a state document. Unknown fields are
// ignored, so a newer leader can add fields without breaking older LBs.
func ParseState(b []byte) (State, error) {
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return State{}, fmt.Errorf("state document: %w", err)
	}
	if s.Generation == 0 {
		return State{}, fmt.Errorf("state document: generation is 0 or missing; the leader always writes 1 or more")
	}
	if _, err := Parse(string(s.Live)); err != nil {
		return State{}, fmt.Errorf("state document: live: %w", err)
	}
	return s, nil
}
