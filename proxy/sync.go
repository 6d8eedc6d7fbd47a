package proxy

import (
	"strconv"

	"github.com/clusterproxy/clusterproxy/internal/resp"
)

// syncReplicas runs after a write's reply arrived when Config.WriteReplicas
// is set: for each master the write changed (c.sync holds its slots), it
// waits until WriteReplicas replicas acknowledged the master's replication
// offset (waitOn: the same procedure as a client's WAIT), at most
// WriteReplicasTimeout. When fewer did, or the wait failed, c.syncErr
// replaces the reply with a -NOREPLICAS error that says the write was
// applied on the master. A write that failed is not waited for.
func (s *session) syncReplicas(c *call) {
	if !writeApplied(c) {
		return
	}
	want := s.srv.cfg.WriteReplicas
	ms := s.srv.cfg.WriteReplicasTimeout.Milliseconds()
	frame := resp.AppendCommandStrings(nil, "WAIT", strconv.Itoa(want), strconv.FormatInt(max(ms, 1), 10))
	replies := s.waitOnAll(s.slotPerMaster(c.sync), frame)
	least := int64(want)
	var failure string
	for _, r := range replies {
		if resp.IsError(r) {
			failure = string(resp.ErrorText(r))
			break
		}
		if n, ok := resp.IntValue(r); ok && n < least {
			least = n
		}
	}
	switch {
	case failure != "":
		c.syncErr = resp.AppendError(nil, "NOREPLICAS proxy: the write was applied on the master, but waiting for its replication failed: "+failure)
	case least < int64(want):
		c.syncErr = resp.AppendError(nil, "NOREPLICAS proxy: the write was applied on the master, but "+
			strconv.FormatInt(least, 10)+" of "+strconv.Itoa(want)+" replicas acknowledged it within "+
			strconv.FormatInt(ms, 10)+"ms")
	}
}

// writeApplied reports whether c's reply says the write may have changed
// something: not an error, and not the nil reply of an EXEC whose WATCH
// failed.
func writeApplied(c *call) bool {
	var r []byte
	switch {
	case c.routed && c.req.Err != nil:
		return false
	case c.routed:
		r = c.req.Reply
	default:
		r = c.reply
	}
	if len(r) == 0 || resp.IsError(r) {
		return false
	}
	switch string(r) {
	case "*-1\r\n", "_\r\n":
		return false
	}
	return true
}
