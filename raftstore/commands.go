package raftstore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// CommandType identifies a replicated command. It is the first byte of every
// Raft log entry this package writes; a JSON body follows it.
//
// Values are part of the on-disk and wire format: never renumber or reuse one.
type CommandType uint8

// IgnoreUnknownTypeFlag marks a command as optional. A server that does not
// know a command type with this bit set skips it, so a new optional command can
// be rolled out one server at a time. An unknown type without the bit makes
// Apply panic: applying it differently from newer replicas would silently
// diverge the state, and crashing is the only safe answer.
const IgnoreUnknownTypeFlag CommandType = 128

// Command types. To add a command:
//
//  1. Add a constant here with the next free number (OR IgnoreUnknownTypeFlag
//     into it if older servers may safely skip it).
//  2. Define its body struct and a handler `func(st *State, body []byte) any`
//     that decodes the body and mutates st. The handler must be deterministic:
//     no time.Now, randomness, config or I/O; the leader-side method stamps
//     such values into the body. Return an error value (not a panic) to reject
//     the command; every replica computes the same error.
//  3. Register the handler in commandHandlers below.
//  4. Add a Store method that validates input, stamps leader-side values and
//     calls s.apply.
//  5. If it adds fields to State, extend State.clone and State.check.
const (
	ServiceStateCommand  CommandType = 1
	AuditAppendCommand   CommandType = 2
	BreakerDataCommand   CommandType = 3
	NodeMetaCommand      CommandType = 4
	RestoreStateCommand  CommandType = 5
	FreezeCommand        CommandType = 6
	PackageAddCommand    CommandType = 7
	PackageDeleteCommand CommandType = 8
	CyclePutCommand      CommandType = 9
	ScheduleRunCommand   CommandType = 10
	StageCommand         CommandType = 11
)

// commandHandler applies one decoded command body to the state. It runs with
// the FSM write lock held. Its return value becomes the raft ApplyFuture's
// Response; an error value there is returned to the writer.
type commandHandler func(st *State, body []byte) any

// commandHandlers is the single dispatch table of the FSM.
var commandHandlers = map[CommandType]commandHandler{
	ServiceStateCommand:  applyServiceState,
	AuditAppendCommand:   applyAuditAppend,
	BreakerDataCommand:   applyBreakerData,
	NodeMetaCommand:      applyNodeMeta,
	RestoreStateCommand:  applyRestoreState,
	FreezeCommand:        applyFreeze,
	PackageAddCommand:    applyPackageAdd,
	PackageDeleteCommand: applyPackageDelete,
	CyclePutCommand:      applyCyclePut,
	ScheduleRunCommand:   applyScheduleRun,
	StageCommand:         applyStage,
}

// String implements fmt.Stringer for logs.
func (t CommandType) String() string {
	switch t {
	case ServiceStateCommand:
		return "service_state"
	case AuditAppendCommand:
		return "audit_append"
	case BreakerDataCommand:
		return "breaker_data"
	case NodeMetaCommand:
		return "node_meta"
	case RestoreStateCommand:
		return "restore_state"
	case FreezeCommand:
		return "freeze"
	case PackageAddCommand:
		return "package_add"
	case PackageDeleteCommand:
		return "package_delete"
	case CyclePutCommand:
		return "cycle_put"
	case ScheduleRunCommand:
		return "schedule_run"
	case StageCommand:
		return "stage"
	}
	return fmt.Sprintf("command_type(%d)", uint8(t))
}

var (
	// ErrStaleGeneration is returned when a service state's generation is not
	// above the current one (and the state is not identical to the current).
	ErrStaleGeneration = errors.New("stale generation")
	// ErrInvalidCommand is returned for a command whose content is invalid.
	ErrInvalidCommand = errors.New("invalid command")
)

// encodeCommand frames a command: one type byte, then the JSON body.
func encodeCommand(t CommandType, body any) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte(byte(t))
	if err := json.NewEncoder(&buf).Encode(body); err != nil {
		return nil, fmt.Errorf("encode %s command: %w", t, err)
	}
	return buf.Bytes(), nil
}

// invalid wraps a rejection in ErrInvalidCommand with the command's name.
func invalid(t CommandType, err error) error {
	return fmt.Errorf("%s: %w: %w", t, ErrInvalidCommand, err)
}

func applyServiceState(st *State, body []byte) any {
	var cmd ServiceState
	if err := json.Unmarshal(body, &cmd); err != nil {
		return invalid(ServiceStateCommand, err)
	}
	if err := cmd.validate(); err != nil {
		return invalid(ServiceStateCommand, err)
	}
	cur, ok := st.Services[cmd.Service]
	if ok && cmd.Generation <= cur.Generation {
		if cur.sameAs(cmd) {
			// A retry of a transition that already committed: succeed
			// without touching the state, so UpdatedAt keeps the original.
			return cur.clone()
		}
		return fmt.Errorf("service %q: generation %d is not above the current generation %d: %w",
			cmd.Service, cmd.Generation, cur.Generation, ErrStaleGeneration)
	}
	st.Services[cmd.Service] = cmd
	// The stored value owns cmd.Hidden; hand the caller its own copy.
	return cmd.clone()
}

func applyAuditAppend(st *State, body []byte) any {
	var e AuditEntry
	if err := json.Unmarshal(body, &e); err != nil {
		return invalid(AuditAppendCommand, err)
	}
	return st.Audit.append(e)
}

type breakerDataBody struct {
	Name string `json:"name"`
	// Data nil deletes the entry; gobreaker then starts the breaker afresh.
	Data []byte `json:"data"`
}

func applyBreakerData(st *State, body []byte) any {
	var cmd breakerDataBody
	if err := json.Unmarshal(body, &cmd); err != nil {
		return invalid(BreakerDataCommand, err)
	}
	if cmd.Name == "" {
		return invalid(BreakerDataCommand, errors.New("name: must be set"))
	}
	if len(cmd.Data) == 0 {
		delete(st.Breakers, cmd.Name)
		return nil
	}
	st.Breakers[cmd.Name] = cmd.Data
	return nil
}

type nodeMetaBody struct {
	NodeMeta
	Delete bool `json:"delete,omitempty"`
}

func applyNodeMeta(st *State, body []byte) any {
	var cmd nodeMetaBody
	if err := json.Unmarshal(body, &cmd); err != nil {
		return invalid(NodeMetaCommand, err)
	}
	if cmd.ID == "" {
		return invalid(NodeMetaCommand, errors.New("id: must be set"))
	}
	if cmd.Delete {
		delete(st.Nodes, cmd.ID)
		return nil
	}
	st.Nodes[cmd.ID] = cmd.NodeMeta
	return nil
}

// applyRestoreState replaces the whole state with the body, an encoded State
// (see RestoreSnapshot). It decodes into a fresh State first, so a bad body
// leaves the current state untouched. The audit entries are the snapshot's,
// but the sequence counter keeps the higher of the two values, so a sequence
// number is never handed out twice, even after restoring an older snapshot.
func applyRestoreState(st *State, body []byte) any {
	fresh, err := decodeState(body)
	if err != nil {
		return invalid(RestoreStateCommand, err)
	}
	fresh.Audit.lastSeq = max(fresh.Audit.lastSeq, st.Audit.lastSeq)
	*st = *fresh
	return nil
}

// freezeBody freezes a service (Frozen) or lifts its freeze.
type freezeBody struct {
	Freeze
	Frozen bool `json:"frozen"`
}

func applyFreeze(st *State, body []byte) any {
	var cmd freezeBody
	if err := json.Unmarshal(body, &cmd); err != nil {
		return invalid(FreezeCommand, err)
	}
	if cmd.Service == "" {
		return invalid(FreezeCommand, errors.New("service: must be set"))
	}
	if !cmd.Frozen {
		delete(st.Freezes, cmd.Service)
		return nil
	}
	st.Freezes[cmd.Service] = cmd.Freeze
	return nil
}
