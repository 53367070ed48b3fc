// Package errs gives every licet error a kind and a message meant for the
// person who has to act on it. The kind decides, once, at the edge, which HTTP
// status a server answers with and which exit code the CLI ends with.
package errs

import (
	"errors"
	"fmt"
	"net/http"
)

// Kind classifies an error by what the caller can do about it.
type Kind int

// The kinds, from the caller's point of view.
const (
	// Internal is a failure of licet or of something it depends on (disk, database, network).
	Internal Kind = iota
	// Invalid is input that licet refuses: a malformed field, a bad file, a failed signature.
	Invalid
	// NotFound names an object that does not exist.
	NotFound
	// Conflict is a request that contradicts the current state: a pack already installed,
	// an order already fulfilled, an enrollment code already used.
	Conflict
	// Unauthenticated is a request without valid credentials.
	Unauthenticated
	// Forbidden is an authenticated request for an object the caller may not touch.
	Forbidden
	// TooLarge is a request body over the size limit.
	TooLarge
	// RateLimited is a caller that has sent too many requests.
	RateLimited
	// Exhausted is a request that cannot be met because a pool is empty.
	Exhausted
	// Usage is a command line that licet cannot parse.
	Usage
)

var kindNames = map[Kind]string{
	Internal:        "internal",
	Invalid:         "invalid",
	NotFound:        "not_found",
	Conflict:        "conflict",
	Unauthenticated: "unauthenticated",
	Forbidden:       "forbidden",
	TooLarge:        "too_large",
	RateLimited:     "rate_limited",
	Exhausted:       "exhausted",
	Usage:           "usage",
}

// String returns the kind's code as it appears in JSON error bodies.
func (k Kind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return "internal"
}

// KindFromCode maps a JSON error code back to its kind; unknown codes are Internal.
func KindFromCode(code string) Kind {
	for k, s := range kindNames {
		if s == code {
			return k
		}
	}
	return Internal
}

// Error is an error with a kind, a user-facing message and an optional cause.
type Error struct {
	Kind    Kind
	Message string // what failed and what to do, for a person
	Err     error  // the underlying cause, if any; not shown to remote callers
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// E returns an error of the given kind with a formatted message.
func E(kind Kind, format string, args ...any) error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, args...)}
}

// Wrap returns an error of the given kind whose message explains err.
// A nil err gives nil.
func Wrap(kind Kind, err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return &Error{Kind: kind, Message: fmt.Sprintf(format, args...), Err: err}
}

// KindOf returns the kind of the outermost *Error in err's chain, or Internal.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return Internal
}

// Is reports whether err has the given kind.
func Is(err error, kind Kind) bool { return err != nil && KindOf(err) == kind }

// PublicMessage is the message safe to send to a remote caller: the user-facing
// message of a classified error, or a generic text for an internal one. The
// text of a cause marked Private (a database driver's error, which names
// tables, constraints and values) is left out.
func PublicMessage(err error) string {
	var e *Error
	if errors.As(err, &e) && e.Kind != Internal {
		return publicText(e)
	}
	return "internal error; the server log has the details"
}

// publicText is e.Error() without the text of Private causes.
func publicText(e *Error) string {
	if e.Err == nil {
		return e.Message
	}
	var inner *Error
	if errors.As(e.Err, &inner) {
		if rest := publicText(inner); rest != "" {
			return e.Message + ": " + rest
		}
		return e.Message
	}
	var p *privateError
	if errors.As(e.Err, &p) {
		return e.Message
	}
	return e.Message + ": " + e.Err.Error()
}

// privateError marks an error whose text stays in the server's log.
type privateError struct{ err error }

func (p *privateError) Error() string { return p.err.Error() }
func (p *privateError) Unwrap() error { return p.err }

// Private marks err as not for remote callers: PublicMessage leaves its text
// out (errors.Is and errors.As still see through it). A nil err gives nil.
func Private(err error) error {
	if err == nil {
		return nil
	}
	var p *privateError
	if errors.As(err, &p) {
		return err
	}
	return &privateError{err}
}

// HTTPStatus maps a kind to the HTTP status a server answers with.
func HTTPStatus(k Kind) int {
	switch k {
	case Invalid, Usage:
		return http.StatusBadRequest
	case NotFound:
		return http.StatusNotFound
	case Conflict:
		return http.StatusConflict
	case Unauthenticated:
		return http.StatusUnauthorized
	case Forbidden:
		return http.StatusForbidden
	case TooLarge:
		return http.StatusRequestEntityTooLarge
	case RateLimited:
		return http.StatusTooManyRequests
	case Exhausted:
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

// Exit codes of the licet command. They are part of the CLI's contract.
const (
	ExitOK        = 0 // success
	ExitFailure   = 1 // licet or something it depends on failed; retrying may help
	ExitUsage     = 2 // the command line was wrong
	ExitRejected  = 3 // the input was refused: invalid, tampered, conflicting or not found
	ExitForbidden = 4 // credentials missing, wrong or not allowed for the object
)

// ExitCode maps an error to the licet command's exit code.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	switch KindOf(err) {
	case Usage:
		return ExitUsage
	case Invalid, NotFound, Conflict, TooLarge, Exhausted:
		return ExitRejected
	case Unauthenticated, Forbidden:
		return ExitForbidden
	default:
		return ExitFailure
	}
}
