package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clusterproxy/clusterproxy/internal/resp"
	"github.com/clusterproxy/clusterproxy/internal/testcluster"
	"github.com/clusterproxy/clusterproxy/proxy"
	"github.com/clusterproxy/clusterproxy/router"
	"github.com/redis/go-redis/v9"
)

// closedByProxy waits for the proxy to close c's connection: the next read
// ends with EOF or a reset, without a reply.
func (c *frameConn) closedByProxy(tb testing.TB) {
	tb.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	frame, err := c.rd.ReadReply()
	if err == nil {
		tb.Fatalf("expected the connection to be closed, got %q", describeFrame(frame))
	}
	if !errors.Is(err, io.EOF) && !strings.Contains(err.Error(), "reset") {
		tb.Fatalf("expected the connection to be closed, got %v", err)
	}
}

// do sends one command and checks its reply against want (see matches).
func (c *frameConn) do(tb testing.TB, want string, args ...string) {
	tb.Helper()
	c.send(tb, args)
	if got := c.next(tb); !matches(want, got) {
		tb.Fatalf("%v: got %q, want %q", args, got, want)
	}
}

// clientID asks the proxy for c's client id.
func (c *frameConn) clientID(tb testing.TB) string {
	tb.Helper()
	c.send(tb, []string{"CLIENT", "ID"})
	return strings.TrimPrefix(c.next(tb), ":")
}

// TestClientKill: CLIENT KILL closes the proxy's own client connections,
// in its old form (an address) and with filters (ID, ADDR, LADDR, USER,
// TYPE, SKIPME, MAXAGE), answers Redis's errors, releases a blocked
// client's node connection, and is refused to a restricted default user.
func TestClientKill(t *testing.T) {
	p := startProxy(t, shared, proxy.Config{}, router.Options{})
	ctx := context.Background()
	admin := dialFrames(t, p.Addr, 2)
	adminID := admin.clientID(t)

	// Old form: by address, +OK or "No such client".
	victim := dialFrames(t, p.Addr, 2)
	victim.clientID(t) // the proxy has seen the connection
	admin.send(t, []string{"CLIENT", "KILL", victim.LocalAddr().String()})
	admin.expect(t, 1, "+OK")
	victim.closedByProxy(t)
	admin.send(t, []string{"CLIENT", "KILL", victim.LocalAddr().String()})
	admin.expect(t, 2, "-ERR No such client")

	// Errors, as Redis answers them; nothing is closed.
	for i, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"CLIENT", "KILL", "ID", "0"}, "-ERR client-id should be greater than 0"},
		{[]string{"CLIENT", "KILL", "ID", "x"}, "-ERR client-id should be greater than 0"},
		{[]string{"CLIENT", "KILL", "TYPE", "foo"}, "-ERR Unknown client type 'foo'"},
		{[]string{"CLIENT", "KILL", "USER", "nobody"}, "-ERR No such user 'nobody'"},
		{[]string{"CLIENT", "KILL", "ID", "1", "SKIPME", "maybe"}, "-ERR syntax error"},
		{[]string{"CLIENT", "KILL", "FOO", "bar"}, "-ERR syntax error"},
		{[]string{"CLIENT", "KILL", "ID", "1", "TYPE"}, "-ERR syntax error"},
		{[]string{"CLIENT", "KILL", "MAXAGE", "-1"}, "-ERR maxage is not an integer or out of range"},
		{[]string{"CLIENT", "KILL"}, "-ERR wrong number of arguments for 'client|kill' command"},
		{[]string{"CLIENT", "KILL", "TYPE", "master"}, ":0"},
		{[]string{"CLIENT", "KILL", "ID", "99999999"}, ":0"},
	} {
		admin.send(t, tc.args)
		admin.expect(t, i, tc.want)
	}

	// By ID; by TYPE pubsub (the subscriber only).
	byID := dialFrames(t, p.Addr, 2)
	admin.send(t, []string{"CLIENT", "KILL", "ID", byID.clientID(t)})
	admin.expect(t, 0, ":1")
	byID.closedByProxy(t)
	sub := dialFrames(t, p.Addr, 3)
	sub.send(t, []string{"SUBSCRIBE", "kill:ch"})
	sub.expect(t, 0, "subscribe kill:ch 1")
	plain := dialFrames(t, p.Addr, 2)
	plainID := plain.clientID(t)
	admin.send(t, []string{"CLIENT", "KILL", "TYPE", "pubsub"})
	admin.expect(t, 1, ":1")
	sub.closedByProxy(t)
	plain.send(t, []string{"PING"})
	plain.expect(t, 2, "+PONG")

	// A client blocked in BLPOP: killed, its node connection is released
	// (the node no longer lists a client blocked on the key).
	blocked := dialFrames(t, p.Addr, 2)
	blockedID := blocked.clientID(t)
	blocked.send(t, []string{"BLPOP", "kill:list", "0"})
	node := redis.NewClient(&redis.Options{Addr: p.Router.MasterOf(router.Slot([]byte("kill:list")))})
	defer node.Close()
	waitFor(t, 10*time.Second, "the node to have a client blocked", func() bool {
		return strings.Contains(node.Info(ctx, "clients").Val(), "blocked_clients:1")
	})
	admin.send(t, []string{"CLIENT", "KILL", "ID", blockedID})
	admin.expect(t, 3, ":1")
	blocked.closedByProxy(t)
	waitFor(t, 10*time.Second, "the node connection to be released", func() bool {
		return strings.Contains(node.Info(ctx, "clients").Val(), "blocked_clients:0")
	})

	// USER kills every other client of that user, never the caller
	// (SKIPME yes is the default); MAXAGE only the older ones.
	young := dialFrames(t, p.Addr, 2)
	young.send(t, []string{"PING"})
	young.expect(t, 0, "+PONG")
	admin.send(t, []string{"CLIENT", "KILL", "USER", "default", "MAXAGE", "3600"})
	admin.expect(t, 4, ":0")
	admin.send(t, []string{"CLIENT", "KILL", "USER", "default", "LADDR", young.RemoteAddr().String()})
	admin.expect(t, 5, ":2") // plain and young
	young.closedByProxy(t)
	plain.closedByProxy(t)

	// SKIPME no: the caller gets its reply, then its connection closes.
	admin.send(t, []string{"CLIENT", "KILL", "ID", adminID, "SKIPME", "no"})
	admin.expect(t, 6, ":1")
	admin.closedByProxy(t)
	if _, err := strconv.Atoi(plainID); err != nil {
		t.Fatalf("CLIENT ID = %q", plainID)
	}

	// A restricted default user may not close or pause other clients; it
	// may still mute its own replies.
	rp := startProxy(t, shared, proxy.Config{RestrictDefaultUser: true}, router.Options{})
	r := dialFrames(t, rp.Addr, 2)
	for i, sub := range []string{"KILL", "PAUSE", "UNPAUSE"} {
		args := []string{"CLIENT", sub}
		switch sub {
		case "KILL":
			args = append(args, "ID", "1")
		case "PAUSE":
			args = append(args, "1000")
		}
		r.send(t, args)
		r.expect(t, i, "-NOPERM this user has no permissions to run the 'client|"+strings.ToLower(sub)+"' command")
	}
	r.send(t, []string{"CLIENT", "REPLY", "SKIP"}, []string{"PING"}, []string{"ECHO", "shown"})
	r.expect(t, 3, "shown")
}

// pending sends cmds on c and returns a channel that gets their replies
// once all have come.
func pending(t *testing.T, c *frameConn, cmds ...[]string) <-chan []string {
	t.Helper()
	c.send(t, cmds...)
	out := make(chan []string, 1)
	go func() {
		var got []string
		for range cmds {
			frame, err := c.rd.ReadReply()
			if err != nil {
				got = append(got, "error: "+err.Error())
				break
			}
			got = append(got, describeFrame(frame))
		}
		out <- got
	}()
	return out
}

// notYet checks that nothing arrives on ch for a while: the commands are
// held.
func notYet(t *testing.T, ch <-chan []string, what string) {
	t.Helper()
	select {
	case got := <-ch:
		t.Fatalf("%s ran during the pause: %q", what, got)
	case <-time.After(300 * time.Millisecond):
	}
}

// arrives waits for ch's replies and checks them.
func arrives(t *testing.T, ch <-chan []string, want ...string) {
	t.Helper()
	select {
	case got := <-ch:
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Fatalf("replies %q, want %q", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("replies %q did not come", want)
	}
}

// TestClientPause: CLIENT PAUSE holds this proxy's clients: WRITE holds
// commands that write or may replicate (and EXEC of a transaction that
// queued one) while reads go on, ALL holds every command but CLIENT;
// pipelines stay in order; the pause ends with CLIENT UNPAUSE or its
// timeout; a client killed while held never runs its command; and the
// proxy shuts down without waiting for the pause to end.
func TestClientPause(t *testing.T) {
	p := startProxy(t, shared, proxy.Config{}, router.Options{})
	ctx := context.Background()
	check := p.client(t, 2)
	admin := dialFrames(t, p.Addr, 2)

	admin.do(t, "-ERR timeout is not an integer or out of range", "CLIENT", "PAUSE", "x")
	admin.do(t, "-ERR timeout is negative", "CLIENT", "PAUSE", "-1")
	admin.do(t, "-ERR CLIENT PAUSE mode must be WRITE or ALL", "CLIENT", "PAUSE", "1000", "READ")

	// WRITE: reads go on; a pipeline stops at its first write, in order;
	// EXEC waits when the transaction writes (queued before the pause here).
	tx := dialFrames(t, p.Addr, 2)
	queued := pending(t, tx, []string{"MULTI"}, []string{"INCR", "pause:n"}, []string{"INCR", "pause:n"})
	arrives(t, queued, "+OK", "+QUEUED", "+QUEUED")
	admin.do(t, "+OK", "CLIENT", "PAUSE", "60000", "WRITE")
	if info := check.Info(ctx, "clients").Val(); !strings.Contains(info, "paused_actions:write") {
		t.Fatalf("INFO clients during a WRITE pause:\n%s", info)
	}
	w := dialFrames(t, p.Addr, 2)
	first := pending(t, w, []string{"GET", "pause:k"})
	arrives(t, first, "$-1")
	held := pending(t, w, []string{"SET", "pause:k", "1"}, []string{"GET", "pause:k"}, []string{"PUBLISH", "pause:ch", "x"})
	notYet(t, held, "SET, GET, PUBLISH")
	if v, err := check.Get(ctx, "pause:k").Result(); err != redis.Nil {
		t.Fatalf("GET during the pause = %q, %v; want nil: the SET is held", v, err)
	}
	ro := dialFrames(t, p.Addr, 2)
	roExec := pending(t, ro, []string{"MULTI"}, []string{"GET", "pause:k"}, []string{"EXEC"})
	arrives(t, roExec, "+OK", "+QUEUED", "*1\r\n$-1") // a transaction that only reads runs
	exec := pending(t, tx, []string{"EXEC"})
	notYet(t, exec, "EXEC of a transaction that writes")
	admin.do(t, "+OK", "CLIENT", "UNPAUSE")
	arrives(t, held, "+OK", "1", ":0")
	arrives(t, exec, "1 2")

	// ALL: every command waits except CLIENT, so UNPAUSE still works;
	// inside MULTI too.
	inTx := pending(t, tx, []string{"MULTI"})
	arrives(t, inTx, "+OK")
	admin.do(t, "+OK", "CLIENT", "PAUSE", "60000", "ALL")
	reads := pending(t, w, []string{"GET", "pause:k"})
	notYet(t, reads, "GET during an ALL pause")
	inTx = pending(t, tx, []string{"GET", "pause:k"}, []string{"EXEC"})
	notYet(t, inTx, "a command queued in MULTI during an ALL pause")
	admin.do(t, "+OK", "CLIENT", "PAUSE", "60000", "WRITE") // the mode changes: reads go on
	arrives(t, reads, "1")
	arrives(t, inTx, "+QUEUED", "*1\r\n$1\r\n1")
	admin.do(t, "+OK", "CLIENT", "UNPAUSE")
	if info := check.Info(ctx, "clients").Val(); !strings.Contains(info, "paused_actions:none") {
		t.Fatalf("INFO clients after UNPAUSE:\n%s", info)
	}

	// The pause ends by itself after its timeout.
	admin.do(t, "+OK", "CLIENT", "PAUSE", "400", "WRITE")
	start := time.Now()
	timed := pending(t, w, []string{"SET", "pause:k", "2"})
	arrives(t, timed, "+OK")
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Fatalf("SET answered after %v during a 400 ms pause", took)
	}

	// A client killed while held: its command never runs.
	admin.do(t, "+OK", "CLIENT", "PAUSE", "60000", "WRITE")
	k := dialFrames(t, p.Addr, 2)
	kID := k.clientID(t)
	killed := pending(t, k, []string{"SET", "pause:killed", "1"})
	notYet(t, killed, "SET")
	admin.do(t, ":1", "CLIENT", "KILL", "ID", kID)
	select {
	case got := <-killed:
		if len(got) != 1 || !strings.HasPrefix(got[0], "error:") {
			t.Fatalf("killed client got %q", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("killed client still open")
	}
	admin.do(t, "+OK", "CLIENT", "UNPAUSE")
	if n, err := check.Exists(ctx, "pause:killed").Result(); err != nil || n != 0 {
		t.Fatalf("EXISTS pause:killed = %d, %v: the held SET of a killed client ran", n, err)
	}

	// Shutdown does not wait for a long pause.
	check.Del(ctx, "pause:k", "pause:n")
	admin.do(t, "+OK", "CLIENT", "PAUSE", "60000", "ALL")
	last := pending(t, w, []string{"SET", "pause:last", "1"})
	notYet(t, last, "SET")
	start = time.Now()
	p.Server.Close()
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Close took %v while clients were paused", took)
	}
	<-last
	cluster := testcluster.NewClusterClient(t, shared)
	if n, err := cluster.Exists(ctx, "pause:last").Result(); err != nil || n != 0 {
		t.Fatalf("EXISTS pause:last = %d, %v: the held SET ran at shutdown", n, err)
	}
}

// TestClientReply: CLIENT REPLY OFF, SKIP and ON, RESET and CLIENT
// NO-EVICT behave as a Redis node's: the same pipeline sent to a node and
// to the proxy gets the same replies; pub/sub confirmations and messages
// still arrive.
func TestClientReply(t *testing.T) {
	p := startProxy(t, shared, proxy.Config{}, router.Options{})
	pipeline := [][]string{
		{"CLIENT", "REPLY", "OFF"},
		{"ECHO", "muted"},
		{"GET"}, // an error, muted too
		{"CLIENT", "REPLY", "FOO"},
		{"CLIENT", "REPLY", "ON"},
		{"ECHO", "a"},
		{"CLIENT", "NO-EVICT", "on"},
		{"CLIENT", "NO-EVICT", "maybe"},
		{"CLIENT", "REPLY", "SKIP"},
		{"ECHO", "skipped"},
		{"ECHO", "b"},
		{"CLIENT", "REPLY", "SKIP"},
		{"CLIENT", "REPLY", "SKIP"},
		{"ECHO", "skipped"},
		{"ECHO", "c"},
		{"CLIENT", "REPLY", "OFF"},
		{"RESET"},
		{"ECHO", "d"},
		{"CLIENT", "REPLY", "OFF"},
		{"SUBSCRIBE", "reply:ch"},
		{"PING"},
	}
	want := []string{"+OK", "a", "+OK", "-ERR syntax error", "b", "c", "+RESET", "d", "subscribe reply:ch 1"}
	for _, addr := range []string{shared.Addrs()[0], p.Addr} {
		c := dialFrames(t, addr, 2)
		c.send(t, pipeline...)
		for i, w := range want {
			c.expect(t, i, w)
		}
		// A message is delivered; the PING before it was muted.
		pub := redis.NewClient(&redis.Options{Addr: addr})
		if err := pub.Publish(context.Background(), "reply:ch", "m").Err(); err != nil {
			t.Fatal(err)
		}
		pub.Close()
		c.expect(t, len(want), "message reply:ch m")
	}
}

// monitorBody strips a MONITOR line's time and client address, leaving
// the command as shown.
func monitorBody(tb testing.TB, line string) string {
	tb.Helper()
	if !matches(`+??????????.?????? [0 *] *`, line) {
		tb.Fatalf("not a MONITOR line: %q", line)
	}
	_, body, _ := strings.Cut(line, "] ")
	return body
}

// TestMonitor: MONITOR through the proxy shows the commands of the proxy's
// clients in Redis's format, quoted as a node quotes them, with
// credentials redacted and admin commands left out; RESET ends it; a
// monitor that does not read is disconnected; a restricted default user
// may not run it.
func TestMonitor(t *testing.T) {
	p := startProxy(t, shared, proxy.Config{MaxPipeline: 64}, router.Options{})
	odd := "a b\"c\n\x01\\"
	key := "mon:k"

	// The node's own MONITOR line for the command, for comparison.
	nodeAddr := p.Router.MasterOf(router.Slot([]byte(key)))
	nodeMon := dialFrames(t, nodeAddr, 2)
	nodeMon.send(t, []string{"MONITOR"})
	nodeMon.expect(t, 0, "+OK")
	direct := dialFrames(t, nodeAddr, 2)
	direct.send(t, []string{"SET", key, odd})
	direct.expect(t, 0, "+OK")
	want := monitorBody(t, nodeMon.next(t))

	mon := dialFrames(t, p.Addr, 2)
	mon.send(t, []string{"MONITOR"})
	mon.expect(t, 0, "+OK")
	c := dialFrames(t, p.Addr, 2)
	c.send(t,
		[]string{"SET", key, odd},
		[]string{"CLIENT", "KILL", "ID", "99999999"}, // admin: not shown
		[]string{"AUTH", "someone", "secret"},
		[]string{"HELLO", "2", "AUTH", "someone", "secret", "SETNAME", "x"},
		[]string{"GET", key},
	)
	for i := 0; i < 5; i++ {
		c.next(t)
	}
	line := mon.next(t)
	if !strings.Contains(line, "[0 "+c.LocalAddr().String()+"]") {
		t.Fatalf("MONITOR line %q does not name the client %s", line, c.LocalAddr())
	}
	if got := monitorBody(t, line); got != want {
		t.Fatalf("MONITOR shows %s, the node shows %s", got, want)
	}
	for i, want := range []string{
		`"AUTH" "(redacted)" "(redacted)"`,
		`"HELLO" "2" "AUTH" "(redacted)" "(redacted)" "SETNAME" "x"`,
		`"GET" "mon:k"`,
	} {
		if got := monitorBody(t, mon.next(t)); got != want {
			t.Fatalf("MONITOR line %d: %s, want %s", i, got, want)
		}
	}

	// Long arguments are cut, as in the slow log.
	c.send(t, []string{"ECHO", strings.Repeat("y", 200)})
	c.next(t)
	if got, want := monitorBody(t, mon.next(t)), `"ECHO" "`+strings.Repeat("y", 128)+`... (72 more bytes)"`; got != want {
		t.Fatalf("MONITOR line %s, want %s", got, want)
	}

	// RESET ends MONITOR: the next frame is PING's reply, not a line.
	mon.send(t, []string{"RESET"})
	mon.expect(t, 1, "+RESET")
	c.send(t, []string{"ECHO", "unseen"})
	c.expect(t, 0, "unseen")
	mon.send(t, []string{"PING"})
	mon.expect(t, 2, "+PONG")

	// A monitor that does not read is disconnected once its queue (4
	// MaxPipelines of lines beyond what the sockets hold) is full: 20 MB
	// of lines here.
	slow := dialFrames(t, p.Addr, 2)
	slow.send(t, []string{"MONITOR"})
	slow.expect(t, 0, "+OK")
	flood := dialFrames(t, p.Addr, 2)
	big := strings.Repeat("x", 120)
	for range 80 {
		cmds := make([][]string, 2000)
		for i := range cmds {
			cmds[i] = []string{"ECHO", big}
		}
		flood.send(t, cmds...)
		for range cmds {
			flood.next(t)
		}
	}
	_ = slow.SetReadDeadline(time.Now().Add(20 * time.Second))
	lines := 0
	for {
		// The lines the socket held, then the end (maybe inside a line).
		if _, err := slow.rd.ReadReply(); err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !strings.Contains(err.Error(), "reset") {
				t.Fatalf("after %d lines: %v, want the connection closed", lines, err)
			}
			break
		}
		lines++
	}
	t.Logf("the slow monitor was disconnected after %d lines", lines)

	// A restricted default user may not watch other clients' commands.
	rp := startProxy(t, shared, proxy.Config{RestrictDefaultUser: true}, router.Options{})
	r := dialFrames(t, rp.Addr, 2)
	r.send(t, []string{"MONITOR"})
	r.expect(t, 0, "-NOPERM this user has no permissions to run the 'monitor' command")
	_ = nodeMon.Close()
	_ = direct.Close()
}

// TestClientList: CLIENT LIST and CLIENT INFO show each proxy client's
// state as Redis does (idle time, flags O/P/x/b/N, last command, protocol),
// CLIENT LIST filters by TYPE and ID with Redis's errors, and go-redis
// parses CLIENT INFO.
func TestClientList(t *testing.T) {
	p := startProxy(t, shared, proxy.Config{}, router.Options{})
	ctx := context.Background()
	plain := dialFrames(t, p.Addr, 2)
	plainID := plain.clientID(t)
	sub := dialFrames(t, p.Addr, 3)
	subID := sub.clientID(t)
	sub.send(t, []string{"CLIENT", "SETNAME", "listener"},
		[]string{"CLIENT", "SETINFO", "LIB-NAME", "mylib"},
		[]string{"CLIENT", "SETINFO", "lib-ver", "1.2"},
		[]string{"CLIENT", "SETINFO", "lib-ver", "1 2"},
		[]string{"CLIENT", "SETINFO", "lib-date", "x"},
		[]string{"SUBSCRIBE", "list:ch"})
	sub.expect(t, 0, "+OK")
	sub.expect(t, 1, "+OK")
	sub.expect(t, 2, "+OK")
	sub.expect(t, 3, "-ERR lib-ver cannot contain spaces, newlines or special characters.")
	sub.expect(t, 4, "-ERR Unrecognized option 'lib-date'")
	sub.expect(t, 5, "subscribe list:ch 1")
	tx := dialFrames(t, p.Addr, 2)
	txID := tx.clientID(t)
	tx.send(t, []string{"MULTI"}, []string{"INCR", "list:n"})
	tx.expect(t, 0, "+OK")
	tx.expect(t, 1, "+QUEUED")
	blocked := dialFrames(t, p.Addr, 2)
	blockedID := blocked.clientID(t)
	blocked.send(t, []string{"BLPOP", "list:l", "0"})
	mon := dialFrames(t, p.Addr, 2)
	monID := mon.clientID(t)
	mon.send(t, []string{"MONITOR"})
	mon.expect(t, 0, "+OK")
	time.Sleep(1100 * time.Millisecond) // so that idle shows 1 s

	admin := dialFrames(t, p.Addr, 2)
	adminID := admin.clientID(t)
	list := func(args ...string) string {
		t.Helper()
		admin.send(t, append([]string{"CLIENT", "LIST"}, args...))
		return admin.next(t)
	}
	var got string
	waitFor(t, 10*time.Second, "the blocked client to show flags=b", func() bool {
		got = list()
		return strings.Contains(got, "id="+blockedID+" ") && strings.Contains(got, " flags=b ")
	})
	want := []string{
		`id=` + plainID + ` addr=` + plain.LocalAddr().String() + ` laddr=* name= age=* idle=* flags=N db=0 sub=0 psub=0 ssub=0 cmd=client|id user=default redir=-1 resp=2 lib-name= lib-ver=`,
		`id=` + subID + ` addr=* laddr=* name=listener age=* idle=* flags=P db=0 sub=1 psub=0 ssub=0 cmd=subscribe user=default redir=-1 resp=3 lib-name=mylib lib-ver=1.2`,
		`id=` + txID + ` addr=* laddr=* name= age=* idle=* flags=x db=0 sub=0 psub=0 ssub=0 cmd=incr user=default redir=-1 resp=2 lib-name= lib-ver=`,
		`id=` + blockedID + ` addr=* laddr=* name= age=* idle=* flags=b db=0 sub=0 psub=0 ssub=0 cmd=blpop user=default redir=-1 resp=2 lib-name= lib-ver=`,
		`id=` + monID + ` addr=* laddr=* name= age=* idle=* flags=O db=0 sub=0 psub=0 ssub=0 cmd=monitor user=default redir=-1 resp=2 lib-name= lib-ver=`,
		`id=` + adminID + ` addr=* laddr=* name= age=* idle=0 flags=N db=0 sub=0 psub=0 ssub=0 cmd=client|list user=default redir=-1 resp=2 lib-name= lib-ver=`,
	}
	lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	if len(lines) != len(want) {
		t.Fatalf("CLIENT LIST has %d lines, want %d:\n%s", len(lines), len(want), got)
	}
	for i, w := range want {
		if !matches(w, lines[i]) {
			t.Fatalf("CLIENT LIST line %d:\n%s\nwant\n%s", i, lines[i], w)
		}
	}
	for i, line := range lines[:len(lines)-1] {
		if strings.Contains(line, " idle=0 ") {
			t.Fatalf("CLIENT LIST line %d shows idle=0 after a second without commands:\n%s", i, line)
		}
	}

	// Filters, and Redis's errors.
	if got := list("TYPE", "pubsub"); !strings.HasPrefix(got, "id="+subID+" ") || strings.Count(got, "\n") != 1 {
		t.Fatalf("CLIENT LIST TYPE pubsub:\n%s", got)
	}
	if got := list("TYPE", "normal"); strings.Count(got, "\n") != 5 || strings.Contains(got, "id="+subID+" ") {
		t.Fatalf("CLIENT LIST TYPE normal:\n%s", got)
	}
	if got := list("TYPE", "replica"); got != "" {
		t.Fatalf("CLIENT LIST TYPE replica: %q", got)
	}
	if got := list("ID", txID, plainID, "99999999"); !matches("id="+plainID+" *\nid="+txID+" *\n", got) || strings.Count(got, "\n") != 2 {
		t.Fatalf("CLIENT LIST ID:\n%s", got)
	}
	for _, tc := range []struct{ args, want string }{
		{"TYPE foo", "-ERR Unknown client type 'foo'"},
		{"ID x", "-ERR Invalid client ID"},
		{"ID", "-ERR syntax error"},
		{"FOO", "-ERR syntax error"},
	} {
		if got := list(strings.Fields(tc.args)...); got != tc.want {
			t.Fatalf("CLIENT LIST %s: %q, want %q", tc.args, got, tc.want)
		}
	}

	// go-redis parses CLIENT INFO.
	info, err := p.client(t, 3).ClientInfo(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	if info.Resp != 3 || info.User != "default" || info.ID <= 0 || !strings.HasPrefix(info.LibName, "go-redis") {
		t.Fatalf("CLIENT INFO parsed as %+v", info)
	}
	tx.send(t, []string{"DISCARD"})
	tx.expect(t, 2, "+OK")
}

// TestClientUnblock: CLIENT UNBLOCK ends a proxy client's blocking command
// on its node, as Redis does (a timeout's reply, or -UNBLOCKED with
// ERROR); the client goes on; other clients give 0; a restricted default
// user may not run it.
func TestClientUnblock(t *testing.T) {
	p := startProxy(t, shared, proxy.Config{}, router.Options{})
	admin := dialFrames(t, p.Addr, 2)
	admin.do(t, "-ERR value is not an integer or out of range", "CLIENT", "UNBLOCK", "x")
	admin.do(t, "-ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR", "CLIENT", "UNBLOCK", "1", "MAYBE")
	admin.do(t, ":0", "CLIENT", "UNBLOCK", "99999999")

	b := dialFrames(t, p.Addr, 2)
	id := b.clientID(t)
	admin.do(t, ":0", "CLIENT", "UNBLOCK", id) // not blocked
	for i, tc := range []struct {
		cmd  []string
		mode string
		want string
	}{
		{[]string{"BLPOP", "unblock:l", "0"}, "TIMEOUT", "*-1"},
		{[]string{"BLPOP", "unblock:l", "0"}, "ERROR", "-UNBLOCKED client unblocked via CLIENT UNBLOCK"},
		{[]string{"XREAD", "BLOCK", "0", "STREAMS", "unblock:s", "$"}, "ERROR", "-UNBLOCKED client unblocked via CLIENT UNBLOCK"},
	} {
		b.send(t, tc.cmd)
		waitFor(t, 10*time.Second, "the client to block", func() bool {
			admin.send(t, []string{"CLIENT", "LIST", "ID", id})
			return strings.Contains(admin.next(t), " flags=b ")
		})
		admin.do(t, ":1", "CLIENT", "UNBLOCK", id, tc.mode)
		b.expect(t, i, tc.want)
		b.send(t, []string{"PING"})
		b.expect(t, i, "+PONG")
	}

	rp := startProxy(t, shared, proxy.Config{RestrictDefaultUser: true}, router.Options{})
	r := dialFrames(t, rp.Addr, 2)
	r.send(t, []string{"CLIENT", "UNBLOCK", id})
	r.expect(t, 0, "-NOPERM this user has no permissions to run the 'client|unblock' command")
}

// TestClientAdminChurn: clients reading, writing, blocking and subscribing
// while an admin pauses and unpauses them, kills and unblocks them at
// random and lists them, and a monitor watches: the proxy keeps answering,
// every surviving client's replies are well-formed and in order, and the
// proxy shuts down at once.
func TestClientAdminChurn(t *testing.T) {
	p := startProxy(t, shared, proxy.Config{}, router.Options{})
	ctx := context.Background()
	mon := dialFrames(t, p.Addr, 2)
	mon.send(t, []string{"MONITOR"})
	mon.expect(t, 0, "+OK")
	monDone := make(chan int)
	go func() {
		n := 0
		for {
			if _, err := mon.rd.ReadReply(); err != nil {
				monDone <- n
				return
			}
			n++
		}
	}()

	stop := make(chan struct{})
	errs := make(chan error, 16)
	var ids sync.Map // client id -> true
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for round := 0; ; round++ {
				select {
				case <-stop:
					return
				default:
				}
				if err := churnClient(p.Addr, w, round, rng, &ids, stop); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	admin := p.client(t, 2)
	rng := rand.New(rand.NewPCG(99, 7))
	var killed, unblocked int64
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		var id string
		ids.Range(func(k, _ any) bool {
			id = k.(string)
			return rng.IntN(3) != 0
		})
		var err error
		var n int64
		switch rng.IntN(6) {
		case 0:
			err = admin.Do(ctx, "CLIENT", "PAUSE", strconv.Itoa(rng.IntN(50)), []string{"WRITE", "ALL"}[rng.IntN(2)]).Err()
		case 1:
			err = admin.Do(ctx, "CLIENT", "UNPAUSE").Err()
		case 2:
			if id != "" {
				n, err = admin.Do(ctx, "CLIENT", "KILL", "ID", id).Int64()
				killed += n
			}
		case 3:
			if id != "" {
				n, err = admin.Do(ctx, "CLIENT", "UNBLOCK", id, []string{"TIMEOUT", "ERROR"}[rng.IntN(2)]).Int64()
				unblocked += n
			}
		case 4:
			n, err = admin.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Int64()
			killed += n
		case 5:
			err = admin.Do(ctx, "CLIENT", "LIST").Err()
		}
		if err != nil {
			t.Fatalf("admin: %v", err)
		}
		time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond)
	}
	if err := admin.Do(ctx, "CLIENT", "PAUSE", "60000", "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	close(stop)
	start := time.Now()
	p.Server.Close()
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Close took %v", took)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	lines := <-monDone
	t.Logf("%d clients killed, %d unblocked; the monitor saw %d commands", killed, unblocked, lines)
	if lines == 0 || killed == 0 {
		t.Error("the churn did not exercise MONITOR and CLIENT KILL")
	}
}

// churnClient runs one client connection through a few random commands,
// checking each reply, until it is killed (not an error) or stop.
func churnClient(addr string, w, round int, rng *rand.Rand, ids *sync.Map, stop <-chan struct{}) error {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return nil // the proxy is closing
	}
	defer conn.Close()
	rd := resp.NewReplyReader(conn, resp.Limits{})
	// do sends args and checks the reply against want; ok is false once the
	// connection is gone (killed, or the proxy closing).
	do := func(want string, args ...string) (got string, ok bool, err error) {
		_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := conn.Write(resp.AppendCommandStrings(nil, args...)); err != nil {
			return "", false, nil
		}
		frame, err := rd.ReadReply()
		if err != nil {
			return "", false, nil
		}
		got = describeFrame(frame)
		if !matches(want, got) {
			return got, false, fmt.Errorf("client %d round %d: %v answered %q, want %q", w, round, args, got, want)
		}
		return got, true, nil
	}
	id, ok, err := do(":*", "CLIENT", "ID")
	if !ok {
		return err
	}
	id = strings.TrimPrefix(id, ":")
	ids.Store(id, true)
	defer ids.Delete(id)
	key := "churn:" + strconv.Itoa(w)
	for range 10 {
		select {
		case <-stop:
			return nil
		default:
		}
		switch rng.IntN(5) {
		case 0:
			_, ok, err = do("+OK", "SET", key, strconv.Itoa(rng.IntN(1000)))
		case 1:
			_, ok, err = do("*", "GET", key)
		case 2:
			// A timeout's nil, or -UNBLOCKED from CLIENT UNBLOCK ERROR.
			_, ok, err = do("*", "BLPOP", key+":l", "0.05")
		case 3:
			_, ok, err = do("subscribe "+key+" 1", "SUBSCRIBE", key)
			if ok {
				_, ok, err = do("unsubscribe "+key+" 0", "UNSUBSCRIBE", key)
			}
		case 4:
			_, ok, err = do(":*", "INCR", key+":n")
		}
		if !ok {
			return err
		}
	}
	return nil
}
