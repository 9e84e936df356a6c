package api

import (
	"fmt"
	"net/http"
)

// Stable error codes carried in the JSON error envelope. Clients branch on
// these, never on the message text, so a code never changes meaning once
// released.
const (
	CodeBadRequest           = "bad_request"
	CodeUnauthorized         = "unauthorized"
	CodeForbidden            = "forbidden"
	CodeNotFound             = "not_found"
	CodeMethodNotAllowed     = "method_not_allowed"
	CodeConflict             = "conflict"
	CodeTooLarge             = "too_large"
	CodeUnsupportedMediaType = "unsupported_media_type"
	CodeNotLeader            = "not_leader"
	CodeUnavailable          = "unavailable"
	CodeInternal             = "internal"
	// CodeRefused: a cycle was not started (breaker open, outside a deploy
	// window, frozen, another cycle running, or a preflight check failed).
	// Nothing changed; cyclerctl exits 2.
	CodeRefused = "refused"
)

// StatusNotLeader is the HTTP status sent with CodeNotLeader.
//
// It is 421 Misdirected Request rather than 503 on purpose: 503 means "try
// the same server again later", while not_leader means "this server will
// never do it, send it to the leader". Keeping them apart lets clients and
// proxies retry 503 blindly without looping on a follower.
const StatusNotLeader = http.StatusMisdirectedRequest

// Error is an API error: an HTTP status plus the stable code and human
// message sent in the envelope {"error":{"code":..,"message":..}}.
//
// Handlers return it (or wrap it) to choose the response; the client package
// returns it for every non-2xx response that carries an envelope, so both
// sides can use errors.As to read Code, and errors.Is against the Err*
// sentinels to match a code.
type Error struct {
	// Status is the HTTP status code. It is not part of the JSON body.
	Status int `json:"-"`
	// Code is one of the Code* constants.
	Code string `json:"code"`
	// Message says what was wrong, with the offending value, and what to do.
	Message string `json:"message"`
}

// Error implements error as "<code>: <message>".
func (e *Error) Error() string {
	return e.Code + ": " + e.Message
}

// Is reports whether target is an *Error with the same Code, so
// errors.Is(err, api.ErrNotFound) matches any not_found error whatever its
// message or status.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Sentinel errors, one per code, for use with errors.Is. Their messages are
// generic; construct a specific error with the functions below instead of
// returning these from a handler where a better message is possible.
var (
	ErrBadRequest           = &Error{Status: http.StatusBadRequest, Code: CodeBadRequest, Message: "bad request"}
	ErrUnauthorized         = &Error{Status: http.StatusUnauthorized, Code: CodeUnauthorized, Message: "unauthorized"}
	ErrForbidden            = &Error{Status: http.StatusForbidden, Code: CodeForbidden, Message: "forbidden"}
	ErrNotFound             = &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: "not found"}
	ErrMethodNotAllowed     = &Error{Status: http.StatusMethodNotAllowed, Code: CodeMethodNotAllowed, Message: "method not allowed"}
	ErrConflict             = &Error{Status: http.StatusConflict, Code: CodeConflict, Message: "conflict"}
	ErrTooLarge             = &Error{Status: http.StatusRequestEntityTooLarge, Code: CodeTooLarge, Message: "request body too large"}
	ErrUnsupportedMediaType = &Error{Status: http.StatusUnsupportedMediaType, Code: CodeUnsupportedMediaType, Message: "unsupported media type"}
	ErrNotLeader            = &Error{Status: StatusNotLeader, Code: CodeNotLeader, Message: "this server is not the leader"}
	ErrUnavailable          = &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Message: "service unavailable"}
	ErrInternal             = &Error{Status: http.StatusInternalServerError, Code: CodeInternal, Message: "internal server error"}
	ErrRefused              = &Error{Status: http.StatusConflict, Code: CodeRefused, Message: "refused"}
)

func newError(status int, code, format string, args []any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// BadRequest returns a 400 bad_request error with a formatted message.
func BadRequest(format string, args ...any) *Error {
	return newError(http.StatusBadRequest, CodeBadRequest, format, args)
}

// Unauthorized returns a 401 unauthorized error with a formatted message.
func Unauthorized(format string, args ...any) *Error {
	return newError(http.StatusUnauthorized, CodeUnauthorized, format, args)
}

// Forbidden returns a 403 forbidden error with a formatted message.
func Forbidden(format string, args ...any) *Error {
	return newError(http.StatusForbidden, CodeForbidden, format, args)
}

// NotFound returns a 404 not_found error with a formatted message.
func NotFound(format string, args ...any) *Error {
	return newError(http.StatusNotFound, CodeNotFound, format, args)
}

// MethodNotAllowed returns a 405 method_not_allowed error with a formatted message.
func MethodNotAllowed(format string, args ...any) *Error {
	return newError(http.StatusMethodNotAllowed, CodeMethodNotAllowed, format, args)
}

// Conflict returns a 409 conflict error with a formatted message.
func Conflict(format string, args ...any) *Error {
	return newError(http.StatusConflict, CodeConflict, format, args)
}

// Refused returns a 409 refused error with a formatted message: a cycle was
// not started and nothing changed.
func Refused(format string, args ...any) *Error {
	return newError(http.StatusConflict, CodeRefused, format, args)
}

// TooLarge returns a 413 too_large error with a formatted message.
func TooLarge(format string, args ...any) *Error {
	return newError(http.StatusRequestEntityTooLarge, CodeTooLarge, format, args)
}

// UnsupportedMediaType returns a 415 unsupported_media_type error with a formatted message.
func UnsupportedMediaType(format string, args ...any) *Error {
	return newError(http.StatusUnsupportedMediaType, CodeUnsupportedMediaType, format, args)
}

// Unavailable returns a 503 unavailable error with a formatted message.
func Unavailable(format string, args ...any) *Error {
	return newError(http.StatusServiceUnavailable, CodeUnavailable, format, args)
}

// Internal returns a 500 internal error with a formatted message. Unlike an
// unclassified error returned by a handler, the message is sent to the
// client, so it must not contain secrets or internal detail.
func Internal(format string, args ...any) *Error {
	return newError(http.StatusInternalServerError, CodeInternal, format, args)
}

// NotLeader returns a not_leader error (status StatusNotLeader). leader is the
// current leader's API address if known, or "" when there is no leader (for
// example during an election), and is named in the message so an operator
// can point --addr at it.
func NotLeader(leader string) *Error {
	if leader == "" {
		return newError(StatusNotLeader, CodeNotLeader,
			"this server is not the leader and no leader is known yet; retry shortly", nil)
	}
	return newError(StatusNotLeader, CodeNotLeader,
		"this server is not the leader; the leader is at %s", []any{leader})
}

// envelope is the wire form of an error response.
type envelope struct {
	Error *Error `json:"error"`
}
