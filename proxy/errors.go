package proxy

import (
	"errors"

	"github.com/clusterproxy/clusterproxy/internal/resp"
	"github.com/clusterproxy/clusterproxy/router"
)

// abandoned is the error for a command still running when its client closed
// its side of the connection (it may still read replies after a half-close).
const abandoned = "ERR proxy: the command was abandoned: the client closed its side of the connection"

// errorReply maps a router error to the RESP error the client sees. This is
// the one place where errors become client-visible text; no node address
// ever reaches a client.
func errorReply(err error) []byte {
	var msg string
	switch {
	case errors.Is(err, router.ErrConnLost):
		msg = "ERR proxy: connection to the node was lost before the reply; the command may or may not have been applied"
	case errors.Is(err, router.ErrTimeout):
		msg = "ERR proxy: the node did not answer in time; the command may or may not have been applied"
	case errors.Is(err, router.ErrTooManyRedirects):
		msg = "TRYAGAIN proxy: too many redirections while the cluster reshards, retry later"
	case errors.Is(err, router.ErrNoRoute), errors.Is(err, router.ErrUnavailable):
		msg = "CLUSTERDOWN proxy: no reachable master serves this hash slot"
	case errors.Is(err, router.ErrNoTopology):
		msg = "CLUSTERDOWN proxy: cluster topology not loaded yet"
	case errors.Is(err, router.ErrAborted):
		msg = abandoned
	case errors.Is(err, router.ErrClosed):
		msg = "ERR proxy: shutting down"
	default:
		msg = "ERR proxy: request failed"
	}
	return resp.AppendError(nil, msg)
}
