// Package load drives Redis endpoints with raw RESP over one net.Conn per
// connection: every worker goroutine writes a pipeline of commands and reads
// their replies, with no client library in the hot loop. Targets are a
// single endpoint (the proxy, any other Redis-speaking server) or a Redis
// Cluster reached directly, for which the package keeps its own slot map
// (CLUSTER SLOTS + CRC16) and splits each pipeline by node.
package load

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/clusterproxy/clusterproxy/internal/resp"
)

// dialTimeout bounds one connection attempt.
const dialTimeout = 5 * time.Second

// conn is one raw RESP2 connection.
type conn struct {
	nc   net.Conn
	rd   *resp.Reader
	wbuf []byte
	addr string
}

func dial(ctx context.Context, addr string) (*conn, error) {
	d := net.Dialer{Timeout: dialTimeout}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("load: dial %s: %w", addr, err)
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	return &conn{nc: nc, rd: resp.NewReplyReader(nc, resp.Limits{}), addr: addr}, nil
}

func (c *conn) close() { _ = c.nc.Close() }

// do sends one command and returns its reply frame. An error reply is
// returned as a frame, not as an error.
func (c *conn) do(args ...[]byte) ([]byte, error) {
	c.wbuf = appendCommand(c.wbuf[:0], args...)
	if _, err := c.nc.Write(c.wbuf); err != nil {
		return nil, fmt.Errorf("load: write to %s: %w", c.addr, err)
	}
	f, err := c.rd.ReadReply()
	if err != nil {
		return nil, fmt.Errorf("load: read from %s: %w", c.addr, err)
	}
	return f, nil
}

// doStrings is do with string arguments, for setup and probes.
func (c *conn) doStrings(args ...string) ([]byte, error) {
	b := make([][]byte, len(args))
	for i, a := range args {
		b[i] = []byte(a)
	}
	return c.do(b...)
}

// appendCommand appends args as a RESP array of bulk strings.
func appendCommand(dst []byte, args ...[]byte) []byte {
	dst = append(dst, '*')
	dst = strconv.AppendInt(dst, int64(len(args)), 10)
	dst = append(dst, '\r', '\n')
	for _, a := range args {
		dst = append(dst, '$')
		dst = strconv.AppendInt(dst, int64(len(a)), 10)
		dst = append(dst, '\r', '\n')
		dst = append(dst, a...)
		dst = append(dst, '\r', '\n')
	}
	return dst
}

// replyError returns the error text of an error reply frame, or nil.
func replyError(f []byte) error {
	if resp.IsError(f) {
		return errors.New(string(resp.ErrorText(f)))
	}
	return nil
}

// text returns the content of a simple string, bulk string or integer frame.
func text(f []byte) (string, bool) {
	if len(f) >= 3 && (f[0] == '+' || f[0] == ':') {
		return string(f[1 : len(f)-2]), true
	}
	if b, ok := resp.BulkValue(f); ok {
		return string(b), true
	}
	return "", false
}
