package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
)

// Response headers set by cycler servers.
const (
	// HeaderNode names the node that answered. Every response carries it.
	HeaderNode = "X-Cycler-Node"
	// HeaderIndex carries the Raft index a read was served at, on reads
	// that come from the Raft store. Set it with SetIndex.
	HeaderIndex = "X-Cycler-Index"
)

// SetIndex sets the HeaderIndex response header. Call it before writing the
// body.
func SetIndex(w http.ResponseWriter, index uint64) {
	w.Header().Set(HeaderIndex, strconv.FormatUint(index, 10))
}

// WriteJSON writes v as a JSON response with the given status. v is encoded
// before anything is written, so an encoding error leaves the response
// untouched and is returned for the caller to turn into a 500.
func WriteJSON(w http.ResponseWriter, status int, v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	// Messages quote things like "<token>"; escaping them as \u003c only
	// hurts readability, and nosniff keeps browsers from treating the
	// body as HTML.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("api: encode response: %w", err)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	// A write error here means the client went away; there is nobody left
	// to tell, so it is returned only for completeness.
	if _, err := w.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("api: write response: %w", err)
	}
	return nil
}

// writeError writes e as the JSON error envelope.
func writeError(w http.ResponseWriter, e *Error) error {
	return WriteJSON(w, e.Status, envelope{Error: e})
}

// DecodeJSON decodes the request body into v, strictly:
//
//   - the Content-Type must be application/json (else 415 unsupported_media_type);
//   - the body must be exactly one JSON value: no unknown fields, no
//     trailing data (else 400 bad_request naming the field or byte offset);
//   - the body must fit the route's size limit (else 413 too_large).
//
// Every failure caused by the request is returned as an *Error, so a handler
// can simply return it. Only a programming error (v not a pointer) is not.
func DecodeJSON(r *http.Request, v any) error {
	if r.Body == nil || r.Body == http.NoBody {
		return BadRequest("request body is empty: expected a JSON object")
	}
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		if ct == "" {
			ct = "(none)"
		}
		return UnsupportedMediaType("Content-Type is %s: send the request body as application/json", ct)
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	// A second value (or garbage) after the first is an error, not
	// something to ignore: it usually means two bodies were concatenated.
	end := dec.InputOffset()
	var extra json.RawMessage
	err = dec.Decode(&extra)
	if errors.Is(err, io.EOF) {
		return nil
	}
	var maxErr *http.MaxBytesError
	if errors.As(err, &maxErr) {
		return decodeError(err)
	}
	return BadRequest("request body: unexpected data after the JSON value that ends at offset %d; send a single JSON value", end)
}

// decodeError turns a json.Decoder error into an *Error, or returns err as
// is when it is a programming error rather than a bad request.
func decodeError(err error) error {
	var (
		syntaxErr    *json.SyntaxError
		typeErr      *json.UnmarshalTypeError
		maxErr       *http.MaxBytesError
		unmarshalErr *json.InvalidUnmarshalError
	)
	switch {
	case errors.As(err, &maxErr):
		return TooLarge("request body exceeds the limit of %d bytes for this route", maxErr.Limit)
	case errors.As(err, &syntaxErr):
		return BadRequest("request body: invalid JSON at offset %d: %s", syntaxErr.Offset, trimJSONPrefix(syntaxErr.Error()))
	case errors.As(err, &typeErr):
		if typeErr.Field == "" {
			return BadRequest("request body: expected %s, got JSON %s (offset %d)", jsonKind(typeErr), typeErr.Value, typeErr.Offset)
		}
		return BadRequest("request body: field %q: expected %s, got JSON %s (offset %d)",
			typeErr.Field, jsonKind(typeErr), typeErr.Value, typeErr.Offset)
	case errors.Is(err, io.EOF):
		return BadRequest("request body is empty: expected a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return BadRequest("request body: JSON ends unexpectedly; the body is truncated")
	case errors.As(err, &unmarshalErr):
		return fmt.Errorf("api: decode request: %w", err)
	}
	// encoding/json has no typed error for unknown fields; its message is
	// `json: unknown field "name"`.
	if msg := err.Error(); strings.HasPrefix(msg, "json: unknown field ") {
		field := strings.TrimPrefix(msg, "json: unknown field ")
		return BadRequest("request body: unknown field %s; check the field name against the API reference", field)
	}
	return BadRequest("request body: %s", trimJSONPrefix(err.Error()))
}

func trimJSONPrefix(s string) string {
	return strings.TrimPrefix(s, "json: ")
}

// jsonKind describes the Go type a JSON value was expected to fit, in JSON
// terms a client understands.
func jsonKind(e *json.UnmarshalTypeError) string {
	if e.Type == nil {
		return "a different type"
	}
	switch k := e.Type.Kind().String(); k {
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64", "float32", "float64":
		return "a number (" + k + ")"
	case "slice", "array":
		return "an array"
	case "map", "struct":
		return "an object"
	default:
		return k
	}
}
