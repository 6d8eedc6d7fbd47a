package contextstore

import "errors"

// ErrInvalid is wrapped by every error about a bad argument (an id, a
// role, a token count, a cap, a TTL, content or metadata too large); the
// error's text says which argument and why. Test with errors.Is; use
// errors.As with *ArgError for the message without the package prefix.
var ErrInvalid = errors.New("contextstore: invalid argument")

// ErrWrongType is returned when a key of the session holds a value of
// another type than the store wrote there (it was written by something
// else).
var ErrWrongType = errors.New("contextstore: a key of the session holds the wrong kind of value")

// ErrPinnedOverBudget is returned by Window when the pinned system prompt
// alone needs more tokens than the budget: no window can then both keep the
// session's instructions and stay within the budget.
var ErrPinnedOverBudget = errors.New("contextstore: the pinned prompt alone exceeds the budget")

// ArgError is a bad argument. It wraps ErrInvalid.
type ArgError struct {
	// Msg says which argument is wrong and why, e.g. `role "bot" is not
	// one of system, user, assistant, tool`.
	Msg string
}

// Error implements error.
func (e *ArgError) Error() string { return "contextstore: " + e.Msg }

// Unwrap returns ErrInvalid.
func (e *ArgError) Unwrap() error { return ErrInvalid }

func argErr(msg string) error { return &ArgError{Msg: msg} }
