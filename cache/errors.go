package cache

import "errors"

// Errors returned by the package, wrapped with context; test with
// errors.Is.
var (
	// ErrBadJSON: the request body given to Key is not one JSON object.
	ErrBadJSON = errors.New("request body is not valid JSON")
	// ErrBadNamespace: a namespace is empty, too long, or has a brace, a
	// space or a control character.
	ErrBadNamespace = errors.New("bad namespace")
	// ErrBadKey: a key was not built by Key.
	ErrBadKey = errors.New("bad cache key")
	// ErrBadArgument: another argument is out of its documented range.
	ErrBadArgument = errors.New("bad argument")
	// ErrBadToken: a fill token is malformed (not 32 lower-case hex digits).
	ErrBadToken = errors.New("malformed fill token")
	// ErrBadTTL: a TTL is outside [MinTTL, MaxTTL].
	ErrBadTTL = errors.New("TTL out of range")
	// ErrStaleToken: the fill token is not the entry's current one: its
	// lease ended, or the entry was filled, aborted or deleted since.
	ErrStaleToken = errors.New("fill token is stale or unknown (lease ended, or entry filled, aborted or deleted)")
	// ErrTooLarge: a value, or a stream's chunks together, exceed
	// Config.MaxValueBytes.
	ErrTooLarge = errors.New("value too large")
	// ErrTooManyChunks: a stream exceeds Config.MaxChunks.
	ErrTooManyChunks = errors.New("too many stream chunks")
	// ErrWrongType: a key the cache uses holds another kind of value.
	ErrWrongType = errors.New("key holds a value of the wrong kind")
	// ErrStreamLost: a stream's chunks expired or were removed before
	// Commit.
	ErrStreamLost = errors.New("stream chunks lost before commit")
)
