package router

import "errors"

// Sentinel errors of the router. The proxy maps them to RESP errors in one
// place (proxy/errors.go); none of them carries a node address to the client.
var (
	// ErrClosed is returned for requests sent to a router or node pipe that
	// has been closed.
	ErrClosed = errors.New("router: closed")
	// ErrAborted is returned for a command on a dedicated connection
	// (Block, Dedicated.Watch) whose caller gave up on it: the client went
	// away, or closed its side of the connection, while it was running.
	ErrAborted = errors.New("router: aborted by the caller")
	// ErrNoRoute is returned when no reachable master owns a slot within the
	// retry window.
	ErrNoRoute = errors.New("router: hash slot not served by any reachable master")
	// ErrTooManyRedirects is returned when a request is redirected more often
	// than Options.MaxRedirects.
	ErrTooManyRedirects = errors.New("router: too many redirections")
	// ErrConnLost is returned when a connection to a node broke after the
	// request was written and before its reply arrived: the command may or
	// may not have been applied, so it is not retried (unless
	// Request.Resendable).
	ErrConnLost = errors.New("router: connection to node lost before the reply")
	// ErrTimeout is returned when a node did not answer within Options.ReadTimeout.
	ErrTimeout = errors.New("router: node did not answer in time")
	// ErrUnavailable is returned when a node cannot be reached (dial failed or
	// in backoff after a failed dial) and the retry window has passed.
	ErrUnavailable = errors.New("router: node unavailable")
	// ErrNoTopology is returned before the first successful topology load.
	ErrNoTopology = errors.New("router: cluster topology not loaded")
)
