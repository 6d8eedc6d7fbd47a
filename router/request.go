package router

import (
	"sync/atomic"
	"time"
)

// Request is one command on its way to the cluster. Fill the exported input
// fields, call Router.Send, then Router.Wait; the result is in Reply or Err.
// A Request may be reused (Reset) once Wait has returned.
type Request struct {
	// Frame is the raw RESP command, written to the node as is. It must stay
	// unchanged until Wait returns.
	Frame []byte
	// Slot is the hash slot of the command's keys, or -1 for a keyless
	// command (sent to a master chosen by Conn).
	Slot int
	// Addr, when set, sends the command to that node whatever its slots
	// (fan-out to every master).
	Addr string
	// Conn picks which of a node's multiplexed connections carries the
	// request. A client session uses one value for all its requests so that
	// its commands to one node run in the order it sent them.
	Conn int
	// Proto is the RESP version the reply must be in (2 or 3).
	Proto int
	// Resendable marks a command that is safe to send again after a
	// connection broke while it was in flight: a read, or a write that
	// gives the same state and reply when applied twice.
	Resendable bool
	// ReadOnly marks a command that only reads: with Options.ReadFrom set
	// to ReadPreferReplica it may be served by a replica.
	ReadOnly bool
	// BlockedOn, when set, is where Block keeps the dedicated connection
	// the request waits on (nil outside that wait), so that another
	// goroutine can unblock the command on its node (see
	// Dedicated.NoReuse). It belongs to the caller, not to the Request,
	// which may be reused as soon as Block returns.
	BlockedOn *atomic.Pointer[Dedicated]

	// Reply is the raw reply frame; Err is set instead when none was had.
	Reply []byte
	Err   error

	// WrittenAt and RepliedAt are when the last attempt was handed to its
	// node connection's writer and when its reply was read. They are zero
	// for stages not reached, and taken once per written batch and once per
	// read burst (shared by every request in it), so they cost the data path
	// two clock readings per batch, not per request.
	WrittenAt, RepliedAt time.Time

	node       *node
	redirectTo string // node named by the last MOVED/ASK
	asking     bool
	written    bool
	// toReplica is set while the attempt goes to a replica; noReplica once
	// one failed it, so that the next attempts go to the master.
	toReplica, noReplica bool
	// fellBack is set when the attempt went to a replica because the
	// master failed (ReadPreferMaster).
	fellBack  bool
	redirects int
	attempts  int
	deadline  time.Time
	// state is the current attempt's: pending, done, or parked (its waiter
	// sleeps on done). A waiter that finds the attempt done reads the reply
	// without touching the channel; complete sends on done only to a parked
	// waiter.
	state atomic.Uint32
	done  chan struct{}
	group *Group // counts this request's first attempt; cleared by Wait
}

// Request states.
const (
	reqPending uint32 = iota
	reqDone
	reqParked
)

// NewRequest returns an empty Request. A zero Request whose Slot is set is
// usable too (parts of a split command are held by value).
func NewRequest() *Request {
	return &Request{Slot: -1, done: make(chan struct{}, 1)}
}

// Reset clears a Request for reuse; it must not be in flight.
func (r *Request) Reset() {
	done := r.done
	*r = Request{Slot: -1, done: done} // state: reqPending
}

func (r *Request) complete(reply []byte, err error) {
	g := r.group // before done: the waiter may reuse r once it has it
	r.Reply, r.Err = reply, err
	if r.state.Swap(reqDone) == reqParked {
		r.done <- struct{}{}
	}
	if g != nil && g.left.Add(-1) == 0 {
		g.done <- struct{}{}
	}
}

// Group lets one goroutine wait for several requests with a single wake-up
// instead of one per request: a command split over ten slots is woken once,
// when its last part is answered, rather than up to once per part.
//
// Use: Reset, Add each request before sending it, send them, then Wait,
// then Router.Wait on each request (at once done unless it must be retried;
// retries are not counted by the group). A Group is reusable after that.
type Group struct {
	left atomic.Int32
	done chan struct{}
}

// Reset prepares g for a new set of requests.
func (g *Group) Reset() {
	if g.done == nil {
		g.done = make(chan struct{}, 1)
	}
	g.left.Store(1) // the waiter's share, given up by Wait
}

// Add counts req in g; call it before req is sent.
func (g *Group) Add(req *Request) {
	g.left.Add(1)
	req.group = g
}

// Wait returns once every request added has ended its first attempt.
func (g *Group) Wait() {
	if g.left.Add(-1) != 0 {
		<-g.done
	}
}

// wait returns once the current attempt has ended.
func (r *Request) wait() {
	if r.state.Load() == reqDone {
		return
	}
	if r.done == nil {
		// A zero Request gets its channel when first waited on; complete
		// reads it only after seeing reqParked, set below.
		r.done = make(chan struct{}, 1)
	}
	if r.state.CompareAndSwap(reqPending, reqParked) {
		<-r.done
	}
}

// NodeAddr returns the address of the node that handled the last attempt,
// or "" before one.
func (r *Request) NodeAddr() string {
	if r.node == nil {
		return ""
	}
	return r.node.addr
}

// Redirects returns the MOVED and ASK redirections followed so far.
func (r *Request) Redirects() int { return r.redirects }
