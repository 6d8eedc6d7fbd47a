package proxy

import "time"

// Observer is told about client-side events, for metrics. Implementations
// must be fast and safe for concurrent use: they run on the request path.
type Observer interface {
	ClientConnected()
	ClientDisconnected()
	// CommandDone is called once per answered command with its canonical
	// name ("get", "config|get"; "unknown" for an unknown command), whether
	// the reply was an error, and the time from reading it to writing the
	// reply.
	CommandDone(name string, failed bool, d time.Duration)
	ProtocolError()
	Unsupported(name string)
	AuthFailure()
	SlowSubscriber()
	// GatewayEvent counts one outcome of a gateway command: family is
	// "ratelimit", "cache" or "context"; event is the outcome ("allowed",
	// "limited", "hit", "miss", "fill", "wait", "trim", ...).
	GatewayEvent(family, event string)
}

// SlowClientObserver is an Observer that also counts clients disconnected
// by ClientWriteTimeout (they accepted no reply bytes for that long). It is
// a separate interface so that existing Observers keep compiling.
type SlowClientObserver interface {
	SlowClient()
}

// CommandRecorderObserver is an Observer that can also hand out the
// recorder of one command name: a function with CommandDone's effect for
// that name, which sessions keep for the command they answered last instead
// of having the name looked up on every reply.
type CommandRecorderObserver interface {
	CommandRecorder(name string) func(failed bool, d time.Duration)
}

type nopObserver struct{}

func (nopObserver) ClientConnected()                        {}
func (nopObserver) ClientDisconnected()                     {}
func (nopObserver) CommandDone(string, bool, time.Duration) {}
func (nopObserver) ProtocolError()                          {}
func (nopObserver) Unsupported(string)                      {}
func (nopObserver) AuthFailure()                            {}
func (nopObserver) SlowSubscriber()                         {}
func (nopObserver) GatewayEvent(string, string)             {}
